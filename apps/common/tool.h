// What every llmc executable shares: the common flags (declared once), --config JSON files,
// run-context resolution, signals, metrics JSON, and the one place where typed errors
// become exit codes.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "llmc/core/options.h"
#include "llmc/core/run_context.h"

namespace llmc::cli {

struct CommonFlags {
  std::string device{"auto"};
  std::string dtype{"float32"};
  int threads{0};
  uint64_t seed{0};
  std::string revision{"main"};
  std::string config;
  std::string metrics_out;
  bool json{false};
  std::string log_level{"info"};
  bool quiet{false};
  bool overwrite{false};
};

// Completes a tool's figures into the full metrics JSON (tool, llmc_version, status,
// elapsed_s, options), for tools that write metrics.json into an output directory.
using Decorate = std::function<nlohmann::json(const nlohmann::json& result)>;

// The tool's work: returns its result figures (merged into the metrics JSON).
using ToolBody = std::function<nlohmann::json(const RunContext& ctx, const CommonFlags& flags, const Decorate& decorate)>;

// Declares a tool's flags from its option table (kCommon fields are declared by run_tool).
void add_option_fields(CLI::App& app, const std::vector<OptionField>& fields);

// Parses argv (after the tool declared its own flags on `app`), runs `body`, prints the
// human summary or --json on stdout, writes --metrics_out, returns the exit code.
// How a tool differs from the others: its own defaults of the common flags (distill: seed
// 42), and whether --config is a file of flags (all tools) or something else (pipeline: its
// recipe, which the body reads from CommonFlags::config).
struct ToolSettings {
  CommonFlags defaults;
  bool config_is_flag_file{true};
  std::string config_help{"JSON file whose keys are this tool's flag names; explicit flags win"};
  // The human summary on stdout (without --json); unset or empty: one line per figure.
  std::function<std::string(const nlohmann::json& metrics)> summary;
};

int run_tool(const std::string& tool, CLI::App& app, int argc, char** argv, const ToolBody& body,
             const ToolSettings& settings = ToolSettings{});

}  // namespace llmc::cli
