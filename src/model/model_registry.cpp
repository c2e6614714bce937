// The model registry: model_type (config.json) -> factory, filled in one function.
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "llmc/core/error.h"
#include "llmc/core/registry.h"
#include "llmc/io/json_file.h"
#include "llmc/model/causal_lm.h"
#include "opt_factory.h"

namespace llmc::model {

namespace {

using Factory = std::function<std::unique_ptr<CausalLM>(const std::string&, const nlohmann::json&, const RunContext&)>;

const Registry<Factory>& model_registry() {
  static const Registry<Factory> registry = [] {
    Registry<Factory> r("model_type");
    r.add("opt", make_opt_causal_lm);
    return r;
  }();
  return registry;
}

}  // namespace

std::unique_ptr<CausalLM> load_causal_lm(const std::string& dir, const RunContext& ctx) {
  const std::string path = (std::filesystem::path(dir) / "config.json").string();
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw InputError(dir + ": config.json not found");
  const nlohmann::json config = io::read_json_file(path);
  if (!config.is_object()) throw InputError(path + ": expected a JSON object");
  if (!config.contains("model_type") || !config["model_type"].is_string()) {
    throw InputError(path + ": missing required field 'model_type'");
  }
  const std::string type = config["model_type"].get<std::string>();
  try {
    return model_registry().get<InputError>(type)(dir, config, ctx);
  } catch (const InputError& e) {
    if (!model_registry().contains(type)) throw InputError(path + ": " + e.what());
    throw;
  }
}

}  // namespace llmc::model
