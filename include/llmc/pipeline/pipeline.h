// The `pipeline` tool as one library call: runs a recipe's stages in order (each stage's
// output is the next one's input), evaluates the original and every stage with the same
// library calls as `evaluate`, skips stages whose output exists with the same hash, and
// writes metrics.json, summary.csv, report.md and SVG plots under the recipe's output_dir.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>

#include "llmc/core/run_context.h"

namespace llmc::pipeline {

struct PipelineOptions {
  std::string config{"configs/pipeline_config.json"};
  bool force{false};    // rerun stages even when their output exists with the same hash
  bool dry_run{false};  // resolve the plan, run nothing
  // --seed when given: the seed of every stage whose options do not set one. Stages of tools
  // without a seed option run with ctx.seed, which is part of their hash.
  std::optional<uint64_t> seed;
};

// Runs the recipe; returns the result figures. With dry_run, returns {"dry_run": true,
// "recipe", "runs", "original", "plan": [{run, stage, tool, input, output, hash, status,
// options}]} and runs nothing; format_plan() turns it into text for a person.
nlohmann::json run_pipeline(const PipelineOptions& options, const RunContext& ctx);

std::string format_plan(const nlohmann::json& dry_run_result);

}  // namespace llmc::pipeline
