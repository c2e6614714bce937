// Private: pieces the packed-weight formats share.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <string>

#include "llmc/model/packed_weight.h"

namespace llmc::model {

// x [..., in] -> x2 [rows, in] float32 contiguous CPU, and the shape of y.
struct FlatInput {
  at::Tensor x2;
  std::vector<int64_t> out_shape;
};
FlatInput flatten_input(const at::Tensor& x, int64_t in, int64_t out);

// y = x W^T computed tile by tile: `dequant(r0, r1, buf)` fills rows [r0, r1) of W (float32)
// into buf; each tile goes through one BLAS product. Never holds more than one tile.
at::Tensor tiled_matmul(const at::Tensor& x2, int64_t out, int64_t in,
                        const std::function<void(int64_t, int64_t, float*)>& dequant);

// y = x W^T for a few rows of x through the weight's one-row vec_* product (vec_units() > 0),
// each row's units split over LibTorch's threads: the modules' path for decode-sized inputs.
at::Tensor vec_rows_matmul(const PackedWeight& w, const at::Tensor& x2);

// Splits [0, rows) over LibTorch's threads.
void parallel_rows(int64_t rows, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace llmc::model
