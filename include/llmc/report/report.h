// Pipeline results as files: summary.csv (a row per run and stage), report.md (readable
// tables and the plots), SVG plots, and a sweep's tables.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace llmc::report {

struct Row {
  std::string run;    // "" without a sweep
  std::string stage;  // "original" or the stage name
  std::string tool;   // "" for the original
  std::string path;   // the model directory
  nlohmann::json swept = nlohmann::json::object();          // sweep path -> value of this run
  nlohmann::json evaluation = nlohmann::json::object();     // evaluate's flat metrics
  nlohmann::json stage_metrics = nlohmann::json::object();  // the tool's metrics.json (per-layer figures)
};

struct ReportInput {
  std::string title;
  std::string recipe_path;
  std::vector<std::string> swept_keys;
  std::vector<Row> rows;
};

// Columns: run, stage, tool, <swept keys>, perplexity, num_parameters, disk_size_bytes,
// memory_footprint_bytes, sparsity, decode_tokens_per_s (empty where not measured).
std::string summary_csv(const ReportInput& in);

// Writes summary.csv, report.md and plots/{size_vs_perplexity,decode_speed,per_layer}.svg
// into dir; returns the paths written.
std::vector<std::string> write_report(const std::string& dir, const ReportInput& in);

// A sweep's tables in dir: compression_ratios.csv|json (size and parameters against the
// original), performance_comparison.csv|json (tokens/s, memory) and accuracy_tradeoffs.csv|json
// (perplexity against size); returns the paths.
std::vector<std::string> write_sweep_tables(const std::string& dir, const ReportInput& in);

}  // namespace llmc::report
