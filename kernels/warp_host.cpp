// Host build of the warp's per-pixel arithmetic (warp_math.cuh), for the tests: the same functions
// the CUDA kernels run, compiled with g++ and called through ctypes, compared with torch's warp.
#include "warp_math.cuh"

struct FloatPlane {
  const float* plane;
  float operator()(int offset) const { return plane[offset]; }
};

extern "C" void pirender_warp_host(const float* image, const float* flow, float* out, int batch, int channels,
                                   int height, int width, int h, int w) {
  const long long plane_size = static_cast<long long>(height) * width;
  for (int b = 0; b < batch; ++b) {
    const float* flow_x = flow + static_cast<long long>(b) * 2 * h * w;
    const float* flow_y = flow_x + static_cast<long long>(h) * w;
    for (int row = 0; row < height; ++row) {
      for (int col = 0; col < width; ++col) {
        float grid_x, grid_y;
        pirender::grid_at(flow_x, flow_y, h, w, row, col, height, width, &grid_x, &grid_y);
        const pirender::Sample s = pirender::sample_at(grid_x, grid_y, height, width);
        for (int c = 0; c < channels; ++c) {
          const long long plane = (static_cast<long long>(b) * channels + c) * plane_size;
          out[plane + row * width + col] = pirender::sample_plane(FloatPlane{image + plane}, s, height, width);
        }
      }
    }
  }
}
