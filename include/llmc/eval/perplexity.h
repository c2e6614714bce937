// Perplexity by the protocol of docs/metrics.md: consecutive non-overlapping windows of
// max_length tokens (the last may be shorter); every token of a window after its first is
// predicted from the tokens before it in the same window.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "llmc/core/run_context.h"
#include "llmc/model/causal_lm.h"

namespace llmc::eval {

struct PerplexityResult {
  double perplexity{0.0};
  double total_nll{0.0};
  int64_t predicted_tokens{0};
  int64_t windows{0};
};

// The protocol's windows, batch_size at a time: fn(ids, mask) gets [B, T] int64 tensors on
// `device`, T the longest window of the batch, shorter windows right-padded (mask 0). A
// progress bar named `label` counts windows; cancellation is checked between batches.
void for_each_window_batch(const std::vector<int64_t>& ids, int64_t max_length, int64_t batch_size, c10::Device device,
                           const std::string& label, const RunContext& ctx,
                           const std::function<void(const at::Tensor& ids, const at::Tensor& mask)>& fn);

// UsageError when max_length or batch_size is out of range, InputError when there is
// nothing to predict (fewer than 2 tokens).
// `observe`, when given, sees every batch's logits [B, T, V] with its ids and mask (T >= 2),
// in protocol order, after the perplexity's own use of them.
using WindowObserver = std::function<void(const at::Tensor& logits, const at::Tensor& ids, const at::Tensor& mask)>;
PerplexityResult perplexity(model::CausalLM& model, const std::vector<int64_t>& ids, int64_t max_length,
                            int64_t batch_size, const RunContext& ctx, const WindowObserver& observe = nullptr);

}  // namespace llmc::eval
