// Prefill and decode throughput at batch 1, after a warm-up.
#pragma once

#include <cstdint>

#include "llmc/core/run_context.h"
#include "llmc/model/causal_lm.h"

namespace llmc::eval {

struct SpeedResult {
  double prefill_tokens_per_s{0.0};
  double decode_tokens_per_s{0.0};
  int64_t prompt_tokens{0};
  int64_t new_tokens{0};
};

// UsageError unless 1 <= sizes and prompt + new tokens fit the model's positions.
void check_benchmark_sizes(const model::CausalLM& model, int64_t prompt_tokens, int64_t new_tokens);

// Prompt ids are drawn from `source_ids` (cycled), or seeded random ids when empty.
SpeedResult benchmark_speed(model::CausalLM& model, const std::vector<int64_t>& source_ids, int64_t prompt_tokens,
                            int64_t new_tokens, const RunContext& ctx);

}  // namespace llmc::eval
