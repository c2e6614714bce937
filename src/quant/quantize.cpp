#include "llmc/quant/quantize.h"

#include <ATen/TensorOperators.h>
#include <ATen/core/grad_mode.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <malloc.h>

#include <regex>

#include "llmc/core/error.h"
#include "llmc/core/logging.h"
#include "llmc/core/progress.h"
#include "llmc/io/hf_model_dir.h"
#include "llmc/io/json_fields.h"
#include "llmc/io/json_file.h"
#include "llmc/io/model_dir_writer.h"
#include "llmc/io/safetensors.h"
#include "llmc/model/weight_count.h"
#include "llmc/model/opt_config.h"
#include "methods.h"

namespace llmc::quant {

namespace fs = std::filesystem;

namespace {

// A Linear inside a decoder layer: "model.decoder.layers.<i>.<path>.weight", 2-D.
bool is_decoder_linear_weight(const std::string& key, const at::Tensor& t) {
  static const std::regex pattern(R"(model\.decoder\.layers\.\d+\..+\.weight)");
  return t.dim() == 2 && std::regex_match(key, pattern);
}

std::string module_of(const std::string& weight_key) { return weight_key.substr(0, weight_key.size() - 7); }

bool skipped_by_user(const std::string& module, const std::vector<std::string>& patterns) {
  for (const auto& p : patterns) {
    if (!p.empty() && module.find(p) != std::string::npos) return true;
  }
  return false;
}

}  // namespace

std::vector<std::string> method_names() { return method_registry().names(); }
std::string method_format(const std::string& method) { return method_registry().get(method).format; }

void validate(const QuantizeOptions& o) {
  if (o.model_name_or_path.empty()) throw UsageError("--model_name_or_path is required");
  if (o.output_dir.empty()) throw UsageError("--output_dir is required");
  method_registry().get(o.quantization_method).validate(o);
  parse_byte_size(o.max_shard_size);
}

nlohmann::json run_quantize(const QuantizeOptions& o, const RunContext& ctx,
                            const std::function<nlohmann::json(const nlohmann::json&)>& decorate) {
  validate(o);
  const Method& method = method_registry().get(o.quantization_method);
  const std::string dir = io::resolve_model_dir(o.model_name_or_path, o.revision);
  const std::string config_path = (fs::path(dir) / "config.json").string();
  nlohmann::json config = io::read_json_file(config_path);
  if (!config.is_object()) throw InputError(config_path + ": expected a JSON object");
  if (config.contains("quantization_config")) {
    const nlohmann::json qc = io::json_field<nlohmann::json>(config, "quantization_config", {}, config_path);
    throw UsageError(dir + " is already quantized (config.json has a quantization_config with quant_method '" +
                     io::json_field<std::string>(qc, "quant_method", "?", config_path, "quantization_config") +
                     "'); quantize the original float model instead");
  }
  const std::string model_type = io::json_field<std::string>(config, "model_type", "", config_path);
  if (model_type != "opt") {
    throw InputError(config_path + ": unsupported model_type '" + model_type.substr(0, 60) + "' (supported: opt)");
  }
  // Every field the model needs, typed and checked now: an output must load.
  const bool tied = model::OptConfig::from_json(config, config_path).tie_word_embeddings;
  const uint64_t max_shard = parse_byte_size(o.max_shard_size);
  const int64_t compute_elem = static_cast<int64_t>(c10::elementSize(ctx.dtype));

  io::ModelDirWriter out(o.output_dir, io::ModelDirWriter::Place::kNewDirectory, o.overwrite);
  at::NoGradGuard no_grad;
  // Per-layer temporaries are large and short-lived: have glibc map them separately so that
  // freeing returns them to the system (its adaptive threshold would otherwise keep them in
  // the heap, and the peak resident size would grow layer after layer).
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  // Zero-copy views on the memory-mapped input files; each is read, used and released.
  io::StateDict input = io::load_weights(dir);

  model::WeightCount in_count, out_count;
  std::vector<std::string> dense_modules = {"lm_head"};
  nlohmann::json layers = nlohmann::json::object();
  int64_t quantized_params = 0, quantized_bytes = 0;
  std::set<std::string> seen;
  Progress progress("quantize", static_cast<int64_t>(input.size()), ctx.progress, "tensor");
  for (auto& [raw_key, tensor] : input) {
    ctx.check_cancelled();
    const std::string key = model::canonical_key(raw_key);
    progress.advance();
    if (!seen.insert(key).second) throw InputError(dir + ": tensor '" + key + "' appears twice");
    if (key == "lm_head.weight" && tied) continue;  // tied to embed_tokens, as transformers saves it
    const auto st = tensor.scalar_type();
    if (st != c10::kFloat && st != c10::kHalf && st != c10::kBFloat16) {
      throw InputError(dir + ": tensor '" + key + "' has dtype " + std::string(c10::toString(st)) +
                       " (expected float32, float16 or bfloat16: is this model already quantized?)");
    }
    const int64_t compute_bytes = tensor.numel() * compute_elem;
    const bool decoder_linear = is_decoder_linear_weight(key, tensor);
    const std::string module = decoder_linear ? module_of(key) : "";
    model::WeightCount this_tensor;  // counted once, for the input and (left dense) the output
    this_tensor.add(tensor, decoder_linear, compute_bytes);
    in_count += this_tensor;
    if (decoder_linear && !skipped_by_user(module, o.skip_modules)) {
      at::Tensor w = tensor.to(c10::kFloat);
      auto packed = method.quantize(w, o);
      at::Tensor deq = packed->dequantize();
      const double rel = (w - deq).norm().item<double>() / std::max(w.norm().item<double>(), 1e-30);
      layers[module] = {{"relative_error", rel}, {"bits_per_weight", packed->bits_per_weight()}};
      for (const auto& [name, t] : packed->state_dict(module + ".")) out.add_tensor(name, t);
      quantized_params += tensor.numel();
      quantized_bytes += packed->nbytes();
      out_count.add(deq, true, packed->nbytes());
    } else {
      if (decoder_linear) dense_modules.push_back(module);
      out.add_tensor(key, tensor.to(c10::kHalf));
      out_count += this_tensor;  // left dense: the input's values
    }
    io::release_pages(tensor);
  }
  progress.finish();
  if (layers.empty()) throw InputError(dir + ": no Linear weight inside model.decoder.layers.* to quantize");
  for (const char* m : {"model.decoder.project_in", "model.decoder.project_out"}) {
    if (seen.count(std::string(m) + ".weight")) dense_modules.push_back(m);
  }
  input.clear();

  out.finish_weights(max_shard);
  config["quantization_config"] = method.config_block(o, dense_modules);
  config["torch_dtype"] = "float16";
  out.write_json("config.json", config);
  for (const auto& [name, content] : method.extra_files(o, o.model_name_or_path)) out.write_json(name, content);
  out.copy_side_files(dir);

  nlohmann::json m = nlohmann::json::object();
  m["input"] = in_count.block(dir, io::directory_size_bytes(dir));
  m["output"] = out_count.block(out.final_dir(), out.staged_bytes());
  m["quantization_method"] = o.quantization_method;
  m["quantized_linears"] = layers.size();
  m["bits_per_parameter_quantized_linears"] = 8.0 * static_cast<double>(quantized_bytes) / static_cast<double>(quantized_params);
  m["bits_per_parameter_file"] =
      8.0 * static_cast<double>(m["output"]["disk_size_bytes"].get<int64_t>()) / static_cast<double>(out_count.num_parameters);
  double worst = 0.0;
  for (const auto& l : layers) worst = std::max(worst, l["relative_error"].get<double>());
  m["max_relative_error"] = worst;
  m["layers"] = layers;
  out.commit("metrics.json", decorate(m));
  log_info("wrote " + out.final_dir());
  return m;
}

std::vector<OptionField> option_fields(QuantizeOptions& o) {
  using R = OptionField::Role;
  return {
      {"model_name_or_path", "model directory or hub id (offline cache)", &o.model_name_or_path, R::kInputModel, true},
      {"output_dir", "where the quantized model directory goes", &o.output_dir, R::kOutputDir, true},
      {"quantization_method", method_registry().joined_names() + " (each writes its own format; see the README)",
       &o.quantization_method},
      {"quantization_bits", "bitsandbytes: 4 or 8; rtn: 2, 3, 4 or 8", &o.quantization_bits},
      {"bnb_4bit_quant_type", "nf4 | fp4", &o.bnb_4bit_quant_type},
      {"bnb_4bit_use_double_quant", "true | false: quantize the absmax too", &o.bnb_4bit_use_double_quant},
      {"bnb_4bit_compute_dtype", "recorded for transformers: float32 | bfloat16 | float16", &o.bnb_4bit_compute_dtype},
      {"blocksize", "4-bit block size: a power of two from 32 to 4096", &o.blocksize},
      {"group_size", "rtn: input columns per scale (-1 = per row)", &o.group_size},
      {"skip_modules", "module-name substrings to leave unquantized", &o.skip_modules},
      {"max_shard_size", "largest safetensors file, e.g. 5GB or 500MB", &o.max_shard_size},
  };
}

}  // namespace llmc::quant
