// Which weights to remove, from importance scores (higher = more important). Pure tensor
// functions, shared by every pruning method.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace llmc::prune {

// Keep-mask (bool, same shape) removing exactly round(ratio * numel) lowest scores of the
// whole tensor; ties are removed in flat index order (a stable sort).
at::Tensor lowest_fraction_mask(const at::Tensor& scores, double ratio);

// The same within each row of a [out, in] score matrix (Wanda's per-output comparison):
// round(ratio * in) lowest of every row.
at::Tensor lowest_fraction_mask_per_row(const at::Tensor& scores, double ratio);

// Keep-masks for several tensors with one threshold across all of them (global scope):
// round(ratio * total) lowest scores overall, ties in tensor order then flat index order.
std::vector<at::Tensor> global_lowest_fraction_masks(const std::vector<at::Tensor>& scores, double ratio);

// N:M semi-structured keep-mask of a [out, in] score matrix: in every group of M
// consecutive inputs of a row, the N highest scores are kept (ties: lower index kept).
// in % m must be 0.
at::Tensor n_of_m_mask(const at::Tensor& scores, int64_t n, int64_t m);

// Indices (ascending) of the `keep` highest importances; ties keep the lower index.
std::vector<int64_t> top_indices(const at::Tensor& importance, int64_t keep);

}  // namespace llmc::prune
