// The `evaluate` tool as one library call: perplexity, generation, speed and size figures
// of a model, returned as the flat metrics JSON of docs/metrics.md.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "llmc/core/options.h"
#include "llmc/core/run_context.h"
#include "llmc/model/generation.h"
#include "llmc/tokenizer/tokenizer.h"

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
  // A base to compare with over the eval_file's windows: a model (directory or hub id) or
  // a file written by --save_logits (docs/metrics.md "compare").
  std::string compare_to;
  std::string save_logits;  // write this model's log-probabilities over the eval_file's windows
  std::string tasks;        // comma-separated task files (.jsonl)
  int64_t limit{0};         // examples per task (0 = all)
};

// The flags of `evaluate` (and the keys of a pipeline recipe's "evaluation"), bound to `o`.
std::vector<OptionField> option_fields(EvaluateOptions& o);

// name, vocabulary size and the ids of a fixed multilingual probe text: two tokenizers with
// the same fingerprint encode text the same way for evaluation's purposes.
nlohmann::json tokenizer_fingerprint(const tokenizer::Tokenizer& tok);

// Reads the eval file whole; InputError when missing, empty or not UTF-8.
std::string read_eval_text(const std::string& path);

nlohmann::json run_evaluate(const EvaluateOptions& options, const RunContext& ctx);

}  // namespace llmc::eval
