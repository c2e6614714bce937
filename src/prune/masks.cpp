#include "llmc/prune/masks.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/zeros.h>

#include <cmath>

#include "llmc/core/error.h"

namespace llmc::prune {

namespace {

int64_t count_for(double ratio, int64_t total) { return static_cast<int64_t>(std::llround(ratio * static_cast<double>(total))); }

// Positions (flat) of the k smallest values, ties in index order.
at::Tensor smallest_positions(const at::Tensor& flat, int64_t k) {
  auto sorted = flat.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false);
  return std::get<1>(sorted).slice(0, 0, k);
}

}  // namespace

at::Tensor lowest_fraction_mask(const at::Tensor& scores, double ratio) {
  at::Tensor flat = scores.reshape(-1).to(c10::kFloat);
  at::Tensor keep = at::ones({flat.numel()}, flat.options().dtype(c10::kBool));
  keep.index_fill_(0, smallest_positions(flat, count_for(ratio, flat.numel())), false);
  return keep.view(scores.sizes());
}

at::Tensor lowest_fraction_mask_per_row(const at::Tensor& scores, double ratio) {
  at::Tensor s2 = scores.to(c10::kFloat).reshape({scores.size(0), -1});
  const int64_t k = count_for(ratio, s2.size(1));
  at::Tensor order = std::get<1>(s2.sort(/*stable=*/true, /*dim=*/1, /*descending=*/false));
  at::Tensor keep = at::ones(s2.sizes(), s2.options().dtype(c10::kBool));
  keep.scatter_(1, order.slice(1, 0, k), false);
  return keep.view(scores.sizes());
}

std::vector<at::Tensor> global_lowest_fraction_masks(const std::vector<at::Tensor>& scores, double ratio) {
  std::vector<at::Tensor> flats;
  for (const auto& s : scores) flats.push_back(s.reshape(-1).to(c10::kFloat));
  at::Tensor all = at::cat(flats);
  at::Tensor keep = at::ones({all.numel()}, all.options().dtype(c10::kBool));
  keep.index_fill_(0, smallest_positions(all, count_for(ratio, all.numel())), false);
  std::vector<at::Tensor> out;
  int64_t offset = 0;
  for (const auto& s : scores) {
    out.push_back(keep.slice(0, offset, offset + s.numel()).view(s.sizes()).clone());
    offset += s.numel();
  }
  return out;
}

at::Tensor n_of_m_mask(const at::Tensor& scores, int64_t n, int64_t m) {
  if (scores.dim() != 2 || scores.size(1) % m != 0) {
    throw UsageError("N:M sparsity needs input widths divisible by M=" + std::to_string(m));
  }
  at::Tensor groups = scores.to(c10::kFloat).reshape({-1, m});
  // Stable descending sort: the N first are kept; equal scores keep the lower index.
  at::Tensor order = std::get<1>(groups.sort(/*stable=*/true, /*dim=*/1, /*descending=*/true));
  at::Tensor keep = at::zeros(groups.sizes(), groups.options().dtype(c10::kBool));
  keep.scatter_(1, order.slice(1, 0, n), true);
  return keep.view(scores.sizes());
}

std::vector<int64_t> top_indices(const at::Tensor& importance, int64_t keep) {
  at::Tensor order = std::get<1>(importance.to(c10::kFloat).reshape(-1).sort(/*stable=*/true, 0, /*descending=*/true));
  at::Tensor kept = std::get<0>(order.slice(0, 0, keep).sort());
  return std::vector<int64_t>(kept.data_ptr<int64_t>(), kept.data_ptr<int64_t>() + kept.numel());
}

}  // namespace llmc::prune
