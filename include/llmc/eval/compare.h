// A model's next-token distributions against a base's, token by token over the perplexity
// protocol's windows (docs/metrics.md "compare"): KL(P_base || P_model), top-1 agreement and
// the change of the correct token's probability, with the statistics of the summary.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <vector>

namespace llmc::eval {

// The base's view of N predicted positions, over the `shared` ids both models have.
struct BaseDistribution {
  // [N, shared] float32 or float64: log-probabilities up to a constant per row (logits);
  // -inf where the base gives no mass.
  at::Tensor logits;
  at::Tensor argmax;       // [N] int64, the base's most likely id; computed from logits when undefined
  at::Tensor target_logp;  // [N] float64, log P_base(correct token); computed from logits when undefined
};

// Statistics streamed over the predicted tokens. KL and Δp are kept per token for their
// percentiles (16 bytes a token).
class CompareAccumulator {
 public:
  // One batch: model_logits [N, >= shared] (any float dtype), targets [N] int64.
  // Every row is a predicted token. Computed in float64 when either side is float64, else
  // in float32 (a vectorised exp within 2 ulp) with the sums and log-sum-exps in float64
  // (KL's error then stays near 1e-7 nats a token); identical inputs give KL exactly 0.
  // One pass per row after its maxima, rows in parallel.
  void add(const at::Tensor& model_logits, const BaseDistribution& base, const at::Tensor& targets);
  int64_t count() const { return static_cast<int64_t>(kl_.size()); }
  // The `compare` keys of docs/metrics.md; InputError when nothing was compared.
  nlohmann::json summary() const;

 private:
  std::vector<double> kl_;
  std::vector<double> delta_p_;
  int64_t same_top_{0};
  double nll_{0}, nll2_{0}, nll_base_{0}, nll_base2_{0}, nll_cross_{0};
};

// The base distribution from the base model's own logits [N, >= shared] (their first
// `shared` ids).
BaseDistribution base_from_logits(const at::Tensor& base_logits, int64_t shared);

// Rows of a --save_logits file to decode and hand CompareAccumulator::add at a time for a
// vocabulary of `width` ids, so that the decoded piece stays near 1 MB (in cache).
int64_t compare_rows_per_piece(int64_t width);

// Percentile by linear interpolation at p·(n−1) of the sorted values (p in [0, 1]).
double percentile(std::vector<double> values, double p);

// For each window of a batch (right-padded), the rows of its logits [B, T, V] that predict a
// token: fn(rows [L−1, V] as a view, targets [L−1] int64) with L the window's length (>= 2).
void for_each_window_rows(const at::Tensor& logits, const at::Tensor& ids, const at::Tensor& mask,
                          const std::function<void(int64_t window, const at::Tensor& rows, const at::Tensor& targets)>& fn);

}  // namespace llmc::eval
