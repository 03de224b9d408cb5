// The PIRenderer warp, per output pixel: the one arithmetic shared by the CUDA kernels (warp.cu)
// and the host build the tests compile (warp_host.cpp). Convention (pirender-spec.md 4.2 steps 5-7):
//   1. flow (B, 2, h, w) in flow-grid pixels, channel 0 = x, 1 = y; normalised as 2 * (f / (n - 1));
//   2. added to a corner-aligned base grid (index c -> 2 * (c / (n - 1)) - 1): an absolute grid;
//   3. that absolute grid is resized to (H, W) bilinearly with align_corners=False;
//   4. the image is sampled bilinearly at it, align_corners=False, zero padding.
// Zero flow is not the identity. Everything is float32 (a half sampling grid misplaces samples).
#pragma once

#if defined(__CUDACC__)
#define PR_HD __host__ __device__ __forceinline__
#else
#include <cmath>
#define PR_HD inline
#endif

namespace pirender {

// Absolute normalised coordinate of flow-grid index `index` (of `size`) displaced by `flow_px`.
PR_HD float absolute_coordinate(int index, int size, float flow_px) {
  const float denominator = static_cast<float>(size - 1);
  const float base = 2.0f * (static_cast<float>(index) / denominator) - 1.0f;
  return base + 2.0f * (flow_px / denominator);
}

// Source position (align_corners=False bilinear resize from `in_size` to `out_size`) of output
// index `out_index`: the lower tap, the upper tap and the upper tap's weight.
struct Taps {
  int low;
  int high;
  float high_weight;
};

PR_HD Taps resize_taps(int out_index, int in_size, int out_size) {
  const float scale = static_cast<float>(in_size) / static_cast<float>(out_size);
  float source = scale * (static_cast<float>(out_index) + 0.5f) - 0.5f;
  if (source < 0.0f) source = 0.0f;
  const int low = static_cast<int>(source);  // source >= 0: truncation is floor
  const int high = low + (low < in_size - 1 ? 1 : 0);
  return Taps{low, high, source - static_cast<float>(low)};
}

// The absolute sampling grid (x, y) at image pixel (row, col), from the flow of one batch item:
// flow_x/flow_y point at its two (h, w) channel planes.
PR_HD void grid_at(const float* flow_x, const float* flow_y, int h, int w, int row, int col, int height,
                   int width, float* grid_x, float* grid_y) {
  const Taps ty = resize_taps(row, h, height);
  const Taps tx = resize_taps(col, w, width);
  const float wy1 = ty.high_weight, wy0 = 1.0f - wy1;
  const float wx1 = tx.high_weight, wx0 = 1.0f - wx1;
  const int i00 = ty.low * w + tx.low, i01 = ty.low * w + tx.high;
  const int i10 = ty.high * w + tx.low, i11 = ty.high * w + tx.high;
  const float x00 = absolute_coordinate(tx.low, w, flow_x[i00]);
  const float x01 = absolute_coordinate(tx.high, w, flow_x[i01]);
  const float x10 = absolute_coordinate(tx.low, w, flow_x[i10]);
  const float x11 = absolute_coordinate(tx.high, w, flow_x[i11]);
  const float y00 = absolute_coordinate(ty.low, h, flow_y[i00]);
  const float y01 = absolute_coordinate(ty.low, h, flow_y[i01]);
  const float y10 = absolute_coordinate(ty.high, h, flow_y[i10]);
  const float y11 = absolute_coordinate(ty.high, h, flow_y[i11]);
  *grid_x = wy0 * (wx0 * x00 + wx1 * x01) + wy1 * (wx0 * x10 + wx1 * x11);
  *grid_y = wy0 * (wx0 * y00 + wx1 * y01) + wy1 * (wx0 * y10 + wx1 * y11);
}

// Bilinear sample weights and taps of a normalised grid point (align_corners=False, zero padding).
struct Sample {
  int x0, y0;       // north-west tap
  float w00, w01;   // weights of (y0, x0), (y0, x0 + 1)
  float w10, w11;   // weights of (y0 + 1, x0), (y0 + 1, x0 + 1)
};

PR_HD Sample sample_at(float grid_x, float grid_y, int height, int width) {
  const float ix = ((grid_x + 1.0f) * static_cast<float>(width) - 1.0f) / 2.0f;
  const float iy = ((grid_y + 1.0f) * static_cast<float>(height) - 1.0f) / 2.0f;
#if defined(__CUDA_ARCH__)
  const float fx = floorf(ix), fy = floorf(iy);
#else
  const float fx = std::floor(ix), fy = std::floor(iy);
#endif
  // the weights as torch's grid_sampler_2d writes them (distances to the opposite taps)
  const float x1 = fx + 1.0f, y1 = fy + 1.0f;
  Sample s;
  s.x0 = static_cast<int>(fx);
  s.y0 = static_cast<int>(fy);
  s.w00 = (x1 - ix) * (y1 - iy);
  s.w01 = (ix - fx) * (y1 - iy);
  s.w10 = (x1 - ix) * (iy - fy);
  s.w11 = (ix - fx) * (iy - fy);
  return s;
}

PR_HD bool inside(int y, int x, int height, int width) {
  return y >= 0 && y < height && x >= 0 && x < width;
}

// One channel plane (height, width) read at a sample; taps outside read 0. Load is a functor
// float(int offset) so the same code reads float or half planes.
template <typename Load>
PR_HD float sample_plane(const Load& load, const Sample& s, int height, int width) {
  float value = 0.0f;
  if (inside(s.y0, s.x0, height, width)) value += s.w00 * load(s.y0 * width + s.x0);
  if (inside(s.y0, s.x0 + 1, height, width)) value += s.w01 * load(s.y0 * width + s.x0 + 1);
  if (inside(s.y0 + 1, s.x0, height, width)) value += s.w10 * load((s.y0 + 1) * width + s.x0);
  if (inside(s.y0 + 1, s.x0 + 1, height, width)) value += s.w11 * load((s.y0 + 1) * width + s.x0 + 1);
  return value;
}

}  // namespace pirender
