// Task accuracy by lm-evaluation-harness's scoring (docs/metrics.md "tasks"): a JSON Lines
// file per task, each line a multiple-choice example {"context", "choices", "gold"} scored
// by the summed log-likelihood of each choice after the context (acc, and acc_norm by the
// choice's length in UTF-8 bytes), or a cloze example {"context", "target"} scored by whether
// greedy decoding reproduces the target (acc) and by the target's log-likelihood.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "llmc/core/run_context.h"
#include "llmc/model/causal_lm.h"
#include "llmc/tokenizer/tokenizer.h"

namespace llmc::eval {

struct TaskExample {
  std::string context;
  std::vector<std::string> choices;  // multiple choice
  int64_t gold{0};
  std::string target;                // cloze
};

struct Task {
  std::string name;  // the file name without .jsonl
  std::string path;
  bool cloze{false};
  std::vector<TaskExample> examples;
};

// Reads and checks a task file (InputError naming the line otherwise); keeps the first
// `limit` examples when limit > 0.
Task read_task_file(const std::string& path, int64_t limit);

// The paths of a comma-separated --tasks value; UsageError for an empty entry.
std::vector<std::string> split_task_list(const std::string& list);

// Scores a task, batch_size sequences per forward pass (longest first). Returns
// {"type", "examples", "acc", "acc_stderr", and "acc_norm", "acc_norm_stderr" (multiple
// choice) or "target_perplexity" (cloze)}.
nlohmann::json score_task(model::CausalLM& model, const tokenizer::Tokenizer& tok, const Task& task, int64_t batch_size,
                          const RunContext& ctx);

}  // namespace llmc::eval
