// Private: SparseGPT on one Linear (docs/methods.md): the mask is chosen block by block (128
// columns, or every M columns for N:M) from the OBS saliency w^2 / [H^-1]_jj of the
// already updated weights, and each pruned weight's error is spread over the columns not yet
// visited, so the kept weights compensate.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace llmc::prune {

struct SparseGptSettings {
  double sparsity{0.5};     // unstructured: the fraction pruned in every block
  int64_t keep_n{0};        // N:M: keep N of every M consecutive inputs (0 = unstructured)
  int64_t group_m{0};
  int64_t block_size{128};
  double damp_percent{0.01};
};

struct SparseGptResult {
  at::Tensor weight;  // float32 [out, in], pruned weights exactly 0
  double damp_used{0.0};
  int damp_retries{0};
  int64_t dead_inputs{0};
};

SparseGptResult sparsegpt_prune(const at::Tensor& weight, const at::Tensor& hessian, const SparseGptSettings& s);

}  // namespace llmc::prune
