// The model registry: model_type (config.json) -> factory, filled in one function.
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "llmc/core/error.h"
#include "llmc/core/registry.h"
#include "llmc/io/hf_model_dir.h"
#include "llmc/io/json_file.h"
#include "llmc/model/causal_lm.h"
#include "opt_factory.h"

namespace llmc::model {

namespace {

struct ModelType {
  std::function<std::unique_ptr<CausalLM>(const nlohmann::json&, io::StateDict, const std::string&, const RunContext&)>
      build;
  std::function<io::StateDict(const nlohmann::json&, uint64_t)> init;
};

const Registry<ModelType>& model_registry() {
  static const Registry<ModelType> registry = [] {
    Registry<ModelType> r("model_type");
    r.add("opt", ModelType{make_opt_causal_lm, init_opt_weights});
    return r;
  }();
  return registry;
}

const ModelType& model_type_of(const nlohmann::json& config, const std::string& source) {
  if (!config.is_object()) throw InputError(source + ": expected a JSON object");
  if (!config.contains("model_type") || !config["model_type"].is_string()) {
    throw InputError(source + ": missing required field 'model_type'");
  }
  const std::string type = config["model_type"].get<std::string>();
  try {
    return model_registry().get<InputError>(type);
  } catch (const InputError& e) {
    throw InputError(source + ": " + e.what());
  }
}

}  // namespace

std::vector<std::string> model_types() { return model_registry().names(); }

std::unique_ptr<CausalLM> make_causal_lm(const nlohmann::json& config, io::StateDict weights, const std::string& source,
                                         const RunContext& ctx) {
  return model_type_of(config, source).build(config, std::move(weights), source, ctx);
}

io::StateDict init_weights(const nlohmann::json& config, uint64_t seed) {
  return model_type_of(config, "config").init(config, seed);
}

std::unique_ptr<CausalLM> load_causal_lm(const std::string& dir, const RunContext& ctx) {
  const std::string path = (std::filesystem::path(dir) / "config.json").string();
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw InputError(dir + ": config.json not found");
  const nlohmann::json config = io::read_json_file(path);
  const ModelType& type = model_type_of(config, path);
  return type.build(config, io::load_weights(dir), dir, ctx);
}

}  // namespace llmc::model
