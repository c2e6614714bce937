// Text generation with the KV cache: greedy by default, or sampling with temperature,
// top-k and top-p; stops at EOS.
#pragma once

#include <cstdint>
#include <optional>
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

// Returns only the new ids (without the prompt). UsageError for bad sampling values.
std::vector<int64_t> generate(CausalLM& model, const std::vector<int64_t>& prompt, const GenerationOptions& options,
                              const RunContext& ctx);

}  // namespace llmc::model
