// Private: GPTQ on one Linear (docs/methods.md, GPTQ): columns quantized one at a time in
// blocks of 128, each one's rounding error spread over the columns not yet quantized through
// the upper Cholesky factor of the inverse Hessian.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace llmc::quant {

struct GptqSettings {
  int64_t bits{4};
  int64_t group_size{128};  // -1 = one group per row
  bool sym{true};
  bool desc_act{false};     // act-order: columns by decreasing diag(H), with static groups
  double damp_percent{0.01};
  int64_t block_size{128};
};

struct GptqResult {
  at::Tensor codes;   // int64 [out, in]
  at::Tensor scales;  // float32 [groups, out]
  at::Tensor zeros;   // float32 [groups, out] (integer values)
  at::Tensor g_idx;   // int64 [in]
  at::Tensor values;  // float32 [out, in]: scale * (code - zero), what the packed weight holds
  double damp_used{0.0};
  int damp_retries{0};
  int64_t dead_inputs{0};
};

// `weight` float [out, in], `hessian` float32 [in, in] (2/n sum x x^T).
GptqResult gptq_quantize(const at::Tensor& weight, const at::Tensor& hessian, const GptqSettings& s);

}  // namespace llmc::quant
