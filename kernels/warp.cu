// Fused PIRenderer warp kernels (loaded with CuPy RawModule by kernels/cupy_warp.py).
// One thread per output pixel (b, row, col): builds the absolute grid from the 1/4-resolution flow,
// upsamples it and samples every channel bilinearly, with no full-resolution grid in memory.
// image/out: (B, C, H, W) contiguous NCHW; flow: (B, 2, h, w) float32 contiguous.
#include <cuda_fp16.h>

#include "warp_math.cuh"

namespace {

template <typename T>
struct Load;

template <>
struct Load<float> {
  const float* plane;
  __device__ float operator()(int offset) const { return __ldg(plane + offset); }
};

template <>
struct Load<__half> {
  const __half* plane;
  __device__ float operator()(int offset) const { return __half2float(plane[offset]); }
};

__device__ __forceinline__ void store(float* out, float value) { *out = value; }
__device__ __forceinline__ void store(__half* out, float value) { *out = __float2half_rn(value); }

template <typename T>
__device__ void warp_pixel(const T* __restrict__ image, const float* __restrict__ flow, T* __restrict__ out,
                           int batch, int channels, int height, int width, int h, int w) {
  const long long pixel = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  const long long plane_size = static_cast<long long>(height) * width;
  if (pixel >= plane_size * batch) return;
  const int b = static_cast<int>(pixel / plane_size);
  const int rest = static_cast<int>(pixel - static_cast<long long>(b) * plane_size);
  const int row = rest / width, col = rest - (rest / width) * width;
  const float* flow_x = flow + static_cast<long long>(b) * 2 * h * w;
  const float* flow_y = flow_x + static_cast<long long>(h) * w;
  float grid_x, grid_y;
  pirender::grid_at(flow_x, flow_y, h, w, row, col, height, width, &grid_x, &grid_y);
  const pirender::Sample s = pirender::sample_at(grid_x, grid_y, height, width);
  for (int c = 0; c < channels; ++c) {
    const long long plane = (static_cast<long long>(b) * channels + c) * plane_size;
    const Load<T> load{image + plane};
    store(out + plane + rest, pirender::sample_plane(load, s, height, width));
  }
}

}  // namespace

extern "C" __global__ void pirender_warp_f32(const float* image, const float* flow, float* out, int batch,
                                             int channels, int height, int width, int h, int w) {
  warp_pixel<float>(image, flow, out, batch, channels, height, width, h, w);
}

extern "C" __global__ void pirender_warp_f16(const __half* image, const float* flow, __half* out, int batch,
                                             int channels, int height, int width, int h, int w) {
  warp_pixel<__half>(image, flow, out, batch, channels, height, width, h, w);
}
