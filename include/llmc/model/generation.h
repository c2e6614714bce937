// Text generation with the KV cache: greedy by default, or sampling with temperature,
// top-k and top-p; stops at EOS.
#pragma once

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "llmc/core/run_context.h"
#include "llmc/model/causal_lm.h"

namespace llmc::model {

struct GenerationOptions {
  int64_t max_new_tokens{32};
  bool do_sample{false};
  double temperature{1.0};
  int64_t top_k{50};  // 0 disables
  double top_p{1.0};
  std::optional<int64_t> eos_token_id;
  bool progress{false};
};

// The greedy choice from last-position logits (float32 [vocab], CPU): the first index of the
// largest value, a NaN counting as the largest (as torch.argmax).
int64_t argmax_id(const at::Tensor& logits);

// The ids sampling may draw from last-position logits (float32 [vocab], CPU) and their
// probabilities, as transformers' temperature, top-k and top-p warpers leave them: top-k keeps
// the scores >= the k-th largest (ties included), top-p then drops the least likely ids whose
// cumulative probability stays <= 1 - top_p (never the most likely). Ordered by decreasing
// probability. With top_k set only those k ids are sorted, never the whole vocabulary.
std::vector<std::pair<int64_t, double>> sampling_support(const at::Tensor& logits, const GenerationOptions& options);

// Returns only the new ids (without the prompt). UsageError for bad sampling values.
std::vector<int64_t> generate(CausalLM& model, const std::vector<int64_t>& prompt, const GenerationOptions& options,
                              const RunContext& ctx);

}  // namespace llmc::model
