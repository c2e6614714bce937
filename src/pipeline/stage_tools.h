// Private: the tools a pipeline stage can run, behind one interface. Each binds a stage's JSON
// options through the tool's own option table (llmc::OptionField), so a stage accepts exactly
// the flags of the executable of the same name.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "llmc/core/registry.h"
#include "llmc/core/run_context.h"

namespace llmc::pipeline {

struct StageTool {
  // UsageError naming `where` for unknown options, wrong types and invalid combinations.
  std::function<void(const nlohmann::json& options, const std::string& where)> check;
  // True when the stage makes a model without an input (distill with student_config).
  std::function<bool(const nlohmann::json& options)> creates_model;
  // True when the tool's option table has `seed` (its seed is an option, not ctx.seed).
  bool has_seed_option{false};
  // Runs the tool on `input` (ignored when creates_model) writing `output`; returns the
  // tool's metrics (also written to output/metrics.json). `resume`: continue an interrupted
  // run of the same stage from its checkpoints (tools that have them).
  std::function<nlohmann::json(const nlohmann::json& options, const std::string& input, const std::string& output,
                               bool resume, const RunContext& ctx)>
      run;
};

const Registry<StageTool>& stage_tools();

}  // namespace llmc::pipeline
