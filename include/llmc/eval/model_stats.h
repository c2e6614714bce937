// Size figures of a loaded model (DESIGN.md §4 definitions).
#pragma once

#include <cstdint>

#include "llmc/model/causal_lm.h"

namespace llmc::eval {

struct ModelStats {
  int64_t num_parameters{0};          // logical weights; tied tensors counted once
  int64_t memory_footprint_bytes{0};  // bytes of the weights as held in memory
  double sparsity{0.0};               // exact zeros among the decoder-layer linear weights
};

ModelStats model_stats(const model::CausalLM& model);

}  // namespace llmc::eval
