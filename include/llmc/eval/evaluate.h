// The `evaluate` tool as one library call: perplexity, generation, speed and size figures
// of a model, returned as the flat metrics JSON of docs/metrics.md.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "llmc/core/options.h"
#include "llmc/core/run_context.h"
#include "llmc/model/generation.h"

namespace llmc::eval {

struct EvaluateOptions {
  std::string model_name_or_path;
  std::string revision{"main"};
  std::string eval_file;      // perplexity when given
  int64_t max_length{0};      // 0 = max_position_embeddings
  int64_t batch_size{1};
  std::string prompt;         // generation when given
  model::GenerationOptions generation;
  bool benchmark{false};
  int64_t bench_prompt_tokens{128};
  int64_t bench_new_tokens{32};
};

// The flags of `evaluate` (and the keys of a pipeline recipe's "evaluation"), bound to `o`.
std::vector<OptionField> option_fields(EvaluateOptions& o);

// Reads the eval file whole; InputError when missing, empty or not UTF-8.
std::string read_eval_text(const std::string& path);

nlohmann::json run_evaluate(const EvaluateOptions& options, const RunContext& ctx);

}  // namespace llmc::eval
