// The `pipeline` tool as one library call: runs a recipe's stages in order (each stage's
// output is the next one's input), evaluates the original and every stage with the same
// library calls as `evaluate`, skips stages whose output exists with the same hash, and
// writes metrics.json, summary.csv, report.md and SVG plots under the recipe's output_dir.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>

#include "llmc/core/run_context.h"

namespace llmc::pipeline {

struct PipelineOptions {
  std::string config{"configs/pipeline_config.json"};
  bool force{false};    // rerun stages even when their output exists with the same hash
  bool dry_run{false};  // print the resolved plan, run nothing
};

nlohmann::json run_pipeline(const PipelineOptions& options, const RunContext& ctx);

}  // namespace llmc::pipeline
