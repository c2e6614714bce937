#include "llmc/pipeline/recipe.h"

#include <cstdlib>
#include <regex>
#include <set>

#include "llmc/core/error.h"
#include "llmc/eval/evaluate.h"
#include "llmc/io/json_file.h"
#include "stage_tools.h"

namespace llmc::pipeline {

namespace {

void only_keys(const nlohmann::json& j, const std::set<std::string>& allowed, const std::string& where) {
  if (!j.is_object()) throw UsageError(where + ": expected a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!allowed.count(it.key())) {
      std::string names;
      for (const auto& a : allowed) names += (names.empty() ? "" : ", ") + a;
      throw UsageError(where + "." + it.key() + ": unknown key (allowed: " + names + ")");
    }
  }
}

std::string string_at(const nlohmann::json& j, const std::string& key, const std::string& where, bool required) {
  if (!j.contains(key)) {
    if (required) throw UsageError(where + "." + key + ": required");
    return "";
  }
  if (!j[key].is_string() || j[key].get<std::string>().empty()) {
    throw UsageError(where + "." + key + ": expected a non-empty string, found " + j[key].dump());
  }
  return j[key].get<std::string>();
}

// Every string value that starts with '@' names a model: @original (when there is one yet) or
// an earlier stage.
void check_references(const nlohmann::json& options, const std::string& where, const std::vector<std::string>& earlier,
                      const std::vector<std::string>& all, bool original_exists) {
  for (auto it = options.begin(); it != options.end(); ++it) {
    if (!it.value().is_string()) continue;
    const std::string v = it.value().get<std::string>();
    if (v.empty() || v[0] != '@') continue;
    const std::string ref = v.substr(1);
    if (ref == "original" && !original_exists) {
      throw UsageError(where + "." + it.key() + ": '@original' before there is one (the recipe names no model_name_or_path, "
                       "so the first stage creates the original)");
    }
    if (ref == "original" || std::find(earlier.begin(), earlier.end(), ref) != earlier.end()) continue;
    const bool later = std::find(all.begin(), all.end(), ref) != all.end();
    throw UsageError(where + "." + it.key() + ": '" + v + "' " +
                     (later ? "refers to a later stage (a stage can only use the original or earlier stages)"
                            : "names no stage (use @original or @<earlier stage name>)"));
  }
}

}  // namespace

Recipe parse_recipe(const nlohmann::json& j, const std::string& source) {
  const std::string r = "recipe";
  only_keys(j, {"name", "model_name_or_path", "output_dir", "evaluation", "stages", "sweep", "description"}, r);
  Recipe recipe;
  recipe.source = source;
  recipe.name = string_at(j, "name", r, true);
  static const std::regex kRecipeName("[A-Za-z0-9_.+ -]{1,100}");
  if (!std::regex_match(recipe.name, kRecipeName) || recipe.name.find_first_not_of(".") == std::string::npos) {
    throw UsageError(r + ".name: '" + recipe.name.substr(0, 60) + "' (1 to 100 letters, digits, spaces and _ . + -; no path "
                     "separators)");
  }
  recipe.model_name_or_path = string_at(j, "model_name_or_path", r, false);
  recipe.output_dir = string_at(j, "output_dir", r, true);
  if (j.contains("evaluation")) {
    recipe.evaluation = j["evaluation"];
    eval::EvaluateOptions probe;
    apply_json_options(eval::option_fields(probe), recipe.evaluation, r + ".evaluation");
  }
  if (!j.contains("stages") || !j["stages"].is_array() || j["stages"].empty()) {
    throw UsageError(r + ".stages: expected a non-empty list of stages");
  }
  std::vector<std::string> names;
  for (size_t i = 0; i < j["stages"].size(); ++i) {
    const nlohmann::json& s = j["stages"][i];
    const std::string where = r + ".stages[" + std::to_string(i) + "]";
    only_keys(s, {"name", "tool", "options", "input"}, where);
    StageSpec st;
    st.name = string_at(s, "name", where, true);
    static const std::regex kName("[A-Za-z0-9_.-]+");
    if (!std::regex_match(st.name, kName) || st.name == "original" || st.name == "." || st.name == "..") {
      throw UsageError(where + ".name: '" + st.name + "' (letters, digits, _ . -; not 'original')");
    }
    if (std::find(names.begin(), names.end(), st.name) != names.end()) {
      throw UsageError(where + ".name: '" + st.name + "' is used by an earlier stage");
    }
    names.push_back(st.name);
    st.tool = string_at(s, "tool", where, true);
    if (!stage_tools().contains(st.tool)) {
      throw UsageError(where + ".tool: unknown tool '" + st.tool + "' (supported: " + stage_tools().joined_names() + ")");
    }
    st.input = string_at(s, "input", where, false);
    if (s.contains("options")) st.options = s["options"];
    recipe.stages.push_back(st);
  }
  for (size_t i = 0; i < recipe.stages.size(); ++i) {
    const StageSpec& st = recipe.stages[i];
    const std::string where = r + ".stages[" + std::to_string(i) + "]";
    const std::vector<std::string> earlier(names.begin(), names.begin() + static_cast<std::ptrdiff_t>(i));
    stage_tools().get(st.tool).check(st.options, where + ".options");
    const bool original_exists = !recipe.model_name_or_path.empty() || i > 0;
    check_references(st.options, where + ".options", earlier, names, original_exists);
    if (!st.input.empty()) check_references(nlohmann::json{{"input", st.input}}, where, earlier, names, original_exists);
    if (!st.input.empty() && st.input[0] != '@') throw UsageError(where + ".input: expected @original or @<earlier stage>");
    const bool creates = stage_tools().get(st.tool).creates_model(st.options);
    if (i == 0 && recipe.model_name_or_path.empty() && !creates) {
      throw UsageError(r + ".model_name_or_path: required unless the first stage creates the model (distill with "
                           "student_config)");
    }
  }
  if (j.contains("sweep")) {
    recipe.sweep = j["sweep"];
    if (!recipe.sweep.is_object()) throw UsageError(r + ".sweep: expected an object of \"path\": [values]");
    for (auto it = recipe.sweep.begin(); it != recipe.sweep.end(); ++it) {
      if (!it.value().is_array() || it.value().empty()) {
        throw UsageError(r + ".sweep." + it.key() + ": expected a non-empty list of values");
      }
    }
  }
  return recipe;
}

Recipe load_recipe(const std::string& path) {
  nlohmann::json j;
  try {
    j = io::read_json_file(path);
  } catch (const InputError& e) {
    throw InputError(std::string("recipe: ") + e.what());
  }
  return parse_recipe(j, path);
}

namespace {

// Sets the value at a dotted path ("stages.0.options.pruning_ratio") of a recipe's JSON; the
// parent must exist (a number indexes a list), the last key may be new inside "options" and
// "evaluation" objects.
void set_path(nlohmann::json& j, const std::string& path, const nlohmann::json& value) {
  nlohmann::json* node = &j;
  size_t start = 0;
  std::vector<std::string> parts;
  while (true) {
    const size_t dot = path.find('.', start);
    parts.push_back(path.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  auto fail = [&] { return UsageError("recipe.sweep." + path + ": names no value of the recipe"); };
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string& p = parts[i];
    const bool last = i + 1 == parts.size();
    if (node->is_array()) {
      if (p.empty() || p.find_first_not_of("0123456789") != std::string::npos) throw fail();
      const size_t k = std::stoul(p);
      if (k >= node->size()) throw fail();
      node = &(*node)[k];
    } else if (node->is_object()) {
      if (!node->contains(p) && !(last && i > 0 && (parts[i - 1] == "options" || parts[i - 1] == "evaluation"))) throw fail();
      node = &(*node)[p];
    } else {
      throw fail();
    }
  }
  *node = value;
}

nlohmann::json recipe_json(const Recipe& r) {
  nlohmann::json j = {{"name", r.name}, {"output_dir", r.output_dir}, {"evaluation", r.evaluation}};
  if (!r.model_name_or_path.empty()) j["model_name_or_path"] = r.model_name_or_path;
  j["stages"] = nlohmann::json::array();
  for (const auto& s : r.stages) {
    nlohmann::json st = {{"name", s.name}, {"tool", s.tool}, {"options", s.options}};
    if (!s.input.empty()) st["input"] = s.input;
    j["stages"].push_back(st);
  }
  return j;
}

}  // namespace

size_t max_sweep_runs() {
  const char* v = std::getenv("LLMC_MAX_SWEEP_RUNS");
  if (v == nullptr || *v == '\0') return 1000;
  char* end = nullptr;
  const unsigned long long n = std::strtoull(v, &end, 10);
  if (*end != '\0' || n == 0) throw UsageError("LLMC_MAX_SWEEP_RUNS: expected a positive integer");
  return static_cast<size_t>(n);
}

std::vector<Run> expand_sweep(const Recipe& recipe) {
  if (recipe.sweep.empty()) return {Run{"", nlohmann::json::object(), recipe}};
  std::vector<std::pair<std::string, nlohmann::json>> axes;  // in key order
  for (auto it = recipe.sweep.begin(); it != recipe.sweep.end(); ++it) axes.emplace_back(it.key(), it.value());
  // The number of combinations, counted without overflow, is checked before any is planned.
  const size_t limit = max_sweep_runs();
  size_t total = 1;
  bool overflow = false;
  std::string sizes;
  for (const auto& a : axes) {
    overflow = overflow || __builtin_mul_overflow(total, a.second.size(), &total);
    sizes += (sizes.empty() ? "" : " x ") + std::to_string(a.second.size());
  }
  if (overflow || total > limit) {
    throw UsageError("recipe.sweep: " + (overflow ? std::string("more than 2^64") : std::to_string(total)) +
                     " combinations (" + sizes + "), more than the limit of " + std::to_string(limit) +
                     " runs (LLMC_MAX_SWEEP_RUNS)");
  }
  std::vector<Run> runs;
  for (size_t k = 0; k < total; ++k) {
    nlohmann::json j = recipe_json(recipe);
    Run run;
    size_t rest = k;
    for (size_t a = axes.size(); a-- > 0;) {
      const auto& values = axes[a].second;
      const nlohmann::json& v = values[rest % values.size()];
      rest /= values.size();
      set_path(j, axes[a].first, v);
      run.swept[axes[a].first] = v;
    }
    run.name = "run-" + std::to_string(k + 1);
    run.recipe = parse_recipe(j, recipe.source);
    run.recipe.sweep = recipe.sweep;
    runs.push_back(std::move(run));
  }
  return runs;
}

}  // namespace llmc::pipeline
