#include "llmc/eval/model_stats.h"

#include <ATen/TensorOperators.h>
#include <c10/core/InferenceMode.h>

#include <set>

namespace llmc::eval {

ModelStats model_stats(const model::CausalLM& model) {
  c10::InferenceMode guard;
  ModelStats s;
  std::set<const void*> seen;
  const auto params = model.named_parameters();
  for (const auto& [name, t] : params) {
    if (!seen.insert(t.data_ptr()).second) continue;  // tied weights count once
    s.num_parameters += t.numel();
    s.memory_footprint_bytes += t.numel() * static_cast<int64_t>(t.element_size());
  }
  const auto linear_names = model.decoder_linear_weight_names();
  const std::set<std::string> wanted(linear_names.begin(), linear_names.end());
  int64_t zeros = 0, total = 0;
  for (const auto& [name, t] : params) {
    if (!wanted.count(name)) continue;
    zeros += (t == 0).sum().item<int64_t>();
    total += t.numel();
  }
  // Packed weights count their logical elements and their packed bytes; their zeros are
  // those of the dequantized values, one layer at a time.
  for (const auto& [name, p] : model.packed_weights()) {
    const int64_t n = p->out_features() * p->in_features();
    s.num_parameters += n;
    s.memory_footprint_bytes += p->nbytes();
    if (!wanted.count(name)) continue;
    zeros += (p->dequantize() == 0).sum().item<int64_t>();
    total += n;
  }
  s.sparsity = total > 0 ? static_cast<double>(zeros) / static_cast<double>(total) : 0.0;
  return s;
}

}  // namespace llmc::eval
