#include "packed_common.h"

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>

#include <vector>

#include "llmc/core/error.h"

namespace llmc::model {

FlatInput flatten_input(const at::Tensor& x, int64_t in, int64_t out) {
  if (x.size(-1) != in) {
    throw UsageError("packed linear: input has " + std::to_string(x.size(-1)) + " features, expected " + std::to_string(in));
  }
  FlatInput f;
  f.out_shape = x.sizes().vec();
  f.out_shape.back() = out;
  f.x2 = x.reshape({-1, in}).to(c10::kFloat).contiguous();
  return f;
}

at::Tensor tiled_matmul(const at::Tensor& x2, int64_t out, int64_t in,
                        const std::function<void(int64_t, int64_t, float*)>& dequant) {
  constexpr int64_t kTileBytes = 1 << 22;  // ~4 MiB of dequantized weights per tile (1 MiB: 12% slower prefill)
  const int64_t tile = std::max<int64_t>(16, kTileBytes / (4 * in));
  at::Tensor y = at::empty({x2.size(0), out}, x2.options());
  at::Tensor buf = at::empty({std::min(tile, out), in}, x2.options());
  for (int64_t r0 = 0; r0 < out; r0 += tile) {
    const int64_t r1 = std::min(out, r0 + tile);
    at::Tensor w = buf.narrow(0, 0, r1 - r0);
    float* wp = w.data_ptr<float>();
    parallel_rows(r1 - r0, [&](int64_t a, int64_t b) { dequant(r0 + a, r0 + b, wp + a * in); });
    // Straight into y's columns (a row-major view with leading dimension `out`: BLAS writes
    // it without a copy).
    at::Tensor y_tile = y.narrow(1, r0, r1 - r0);
    at::mm_out(y_tile, x2, w.t());
  }
  return y;
}

at::Tensor vec_rows_matmul(const PackedWeight& w, const at::Tensor& x2) {
  at::Tensor y = at::empty({x2.size(0), w.out_features()}, x2.options());
  std::vector<float> scratch(static_cast<size_t>(w.vec_scratch_floats()));
  for (int64_t r = 0; r < x2.size(0); ++r) {
    const float* xr = x2.data_ptr<float>() + r * w.in_features();
    float* yr = y.data_ptr<float>() + r * w.out_features();
    w.vec_prepare(xr, scratch.data());
    parallel_rows(w.vec_units(), [&](int64_t a, int64_t b) { w.vec_compute(xr, scratch.data(), a, b, yr); });
  }
  return y;
}

void parallel_rows(int64_t rows, const std::function<void(int64_t, int64_t)>& fn) {
  at::parallel_for(0, rows, 16, [&](int64_t a, int64_t b) { fn(a, b); });
}

}  // namespace llmc::model
