// The `prune` tool as one library call: removes weights of the Linear layers inside the
// decoder layers (unstructured, N:M semi-structured, or whole FFN neurons so that the model
// really shrinks), re-quantizing quantized inputs with their own settings, and writes a
// Hugging Face model directory plus metrics.json.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "llmc/calib/options.h"
#include "llmc/core/options.h"
#include "llmc/core/run_context.h"

namespace llmc::prune {

struct PruneOptions {
  std::string model_path;
  std::string revision{"main"};
  std::string output_dir;
  double pruning_ratio{-1.0};                 // required for structured and unstructured
  std::string pruning_method{"magnitude"};     // magnitude | random | wanda | sparsegpt | activation
  std::string pruning_type{"structured"};      // structured | unstructured | semi_structured
  std::string sparsity_pattern{"2:4"};         // N:M for semi_structured
  std::string scope{"layer"};                  // layer | global (unstructured)
  std::string structure{"ffn"};                // ffn (FFN neurons) | hidden (hidden_size)
  double damp_percent{0.01};                   // sparsegpt
  calib::CalibrationOptions calibration;       // wanda, sparsegpt, activation; any method's output error
  std::string eval_file;                       // perplexity before and after
  int64_t eval_max_length{0};
  std::string max_shard_size{"5GB"};
  bool overwrite{false};
};

// The flags of `prune` (and the keys of a pipeline stage's options), bound to `o`.
std::vector<OptionField> option_fields(PruneOptions& o);

// What prune accepts: --pruning_method (the method registry), --pruning_type, --structure.
std::vector<std::string> method_names();
const std::vector<std::string>& pruning_types();
const std::vector<std::string>& structures();

// UsageError (exit 2) for values out of range or combinations that do not fit.
void validate(const PruneOptions& options);

nlohmann::json run_prune(const PruneOptions& options, const RunContext& ctx,
                         const std::function<nlohmann::json(const nlohmann::json&)>& decorate);

}  // namespace llmc::prune
