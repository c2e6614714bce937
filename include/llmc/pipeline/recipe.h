// Pipeline recipes (JSON): a model, an output directory, how to evaluate, stages that each
// run one tool with that tool's own flags as options, and an optional sweep (a grid over any
// value of the recipe). Parsing checks everything a run would trip over, naming the path in
// the recipe: unknown keys, unknown tools, options a tool does not have, references to
// models that do not exist yet.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace llmc::pipeline {

struct StageSpec {
  std::string name;
  std::string tool;
  std::string input;                                  // "" = the previous stage (or the original); "@name" otherwise
  nlohmann::json options = nlohmann::json::object();  // the tool's flag names
};

struct Recipe {
  std::string name;
  std::string model_name_or_path;  // "" when the first stage creates the model
  std::string output_dir;
  nlohmann::json evaluation = nlohmann::json::object();  // evaluate's flag names
  std::vector<StageSpec> stages;
  nlohmann::json sweep = nlohmann::json::object();  // "dotted.path" -> [values]
  std::string source;                               // the file, for messages
};

// UsageError naming the path (e.g. "stages[1].options.pruning_raito") for anything wrong.
Recipe parse_recipe(const nlohmann::json& j, const std::string& source);
Recipe load_recipe(const std::string& path);

struct Run {
  std::string name;                                 // "run-1", ... ("" without a sweep)
  nlohmann::json swept = nlohmann::json::object();  // path -> value of this run
  Recipe recipe;
};

// One run per combination of the sweep's values (keys in sorted order, the first varies slowest); one run
// named "" without a sweep. UsageError when a path names no value of the recipe.
std::vector<Run> expand_sweep(const Recipe& recipe);

}  // namespace llmc::pipeline
