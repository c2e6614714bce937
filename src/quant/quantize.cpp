#include "llmc/quant/quantize.h"

#include <ATen/TensorOperators.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <malloc.h>

#include <regex>

#include "llmc/calib/calibration.h"
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
  calib::validate(o.calibration);
  if (o.quantization_method != "rtn" && o.quantization_method != "gptq" && !o.sym) {
    throw UsageError("--sym false applies to rtn and gptq (awq always has zero points; bitsandbytes has none)");
  }
  parse_byte_size(o.max_shard_size);
}

namespace {

// The input model directory, its config.json (checked: a float OPT model), and the
// quantization settings every path shares.
struct Input {
  std::string dir;
  nlohmann::json config;
  bool tied{true};
};

Input read_input(const QuantizeOptions& o) {
  Input in;
  in.dir = io::resolve_model_dir(o.model_name_or_path, o.revision);
  const std::string config_path = (fs::path(in.dir) / "config.json").string();
  in.config = io::read_json_file(config_path);
  if (!in.config.is_object()) throw InputError(config_path + ": expected a JSON object");
  if (in.config.contains("quantization_config")) {
    const nlohmann::json qc = io::json_field<nlohmann::json>(in.config, "quantization_config", {}, config_path);
    throw UsageError(in.dir + " is already quantized (config.json has a quantization_config with quant_method '" +
                     io::json_field<std::string>(qc, "quant_method", "?", config_path, "quantization_config") +
                     "'); quantize the original float model instead");
  }
  const std::string model_type = io::json_field<std::string>(in.config, "model_type", "", config_path);
  if (model_type != "opt") {
    throw InputError(config_path + ": unsupported model_type '" + model_type.substr(0, 60) + "' (supported: opt)");
  }
  // Every field the model needs, typed and checked now: an output must load.
  in.tied = model::OptConfig::from_json(in.config, config_path).tie_word_embeddings;
  return in;
}

void check_dtype(const std::string& dir, const std::string& key, const at::Tensor& tensor) {
  const auto st = tensor.scalar_type();
  if (st != c10::kFloat && st != c10::kHalf && st != c10::kBFloat16) {
    throw InputError(dir + ": tensor '" + key + "' has dtype " + std::string(c10::toString(st)) +
                     " (expected float32, float16 or bfloat16: is this model already quantized?)");
  }
}

// The parts of metrics.json and of the output every path writes the same way.
nlohmann::json finish(const QuantizeOptions& o, const Method& method, const Input& in, io::ModelDirWriter& out,
                      const model::WeightCount& in_count, const model::WeightCount& out_count, nlohmann::json layers,
                      std::vector<std::string> dense_modules, int64_t quantized_params, int64_t quantized_bytes,
                      const nlohmann::json& run) {
  if (layers.empty()) throw InputError(in.dir + ": no Linear weight inside model.decoder.layers.* to quantize");
  out.finish_weights(parse_byte_size(o.max_shard_size));
  nlohmann::json config = in.config;
  config["quantization_config"] = method.config_block(o, dense_modules, run);
  config["torch_dtype"] = "float16";
  out.write_json("config.json", config);
  for (const auto& [name, content] : method.extra_files(o, o.model_name_or_path, run)) out.write_json(name, content);
  out.copy_side_files(in.dir);

  nlohmann::json m = nlohmann::json::object();
  m["input"] = in_count.block(in.dir, io::directory_size_bytes(in.dir));
  m["output"] = out_count.block(out.final_dir(), out.staged_bytes());
  m["quantization_method"] = o.quantization_method;
  m["quantized_linears"] = layers.size();
  m["bits_per_parameter_quantized_linears"] = 8.0 * static_cast<double>(quantized_bytes) / static_cast<double>(quantized_params);
  m["bits_per_parameter_file"] =
      8.0 * static_cast<double>(m["output"]["disk_size_bytes"].get<int64_t>()) / static_cast<double>(out_count.num_parameters);
  double worst = 0.0;
  for (const auto& l : layers) worst = std::max(worst, l["relative_error"].get<double>());
  m["max_relative_error"] = worst;
  m["layers"] = std::move(layers);
  for (const auto& [k, v] : run.items()) m[k] = v;
  return m;
}

const std::set<std::string> kDenseAlways = {"model.decoder.project_in", "model.decoder.project_out"};

// Calibrated: the model is loaded (16-bit weights stay 16-bit), every decoder layer is
// compressed on the outputs of the compressed layers before it, and the result is written
// from the model.
nlohmann::json run_calibrated(const QuantizeOptions& o, const Method& method, const Input& in, io::ModelDirWriter& out,
                              const RunContext& ctx, const std::function<nlohmann::json(const nlohmann::json&)>& decorate) {
  model::WeightCount in_count;
  {
    io::StateDict input = io::load_weights(in.dir);
    for (auto& [raw_key, tensor] : input) {
      const std::string key = model::canonical_key(raw_key);
      if (key == "lm_head.weight" && in.tied) continue;
      check_dtype(in.dir, key, tensor);
      in_count.add(tensor, is_decoder_linear_weight(key, tensor), tensor.numel() * static_cast<int64_t>(c10::elementSize(ctx.dtype)));
      io::release_pages(tensor);
    }
  }
  RunContext load_ctx = ctx;
  load_ctx.keep_16bit_weights = true;
  auto lm = model::load_causal_lm(in.dir, load_ctx);
  std::set<std::string> skipped;
  for (int64_t i = 0; i < lm->info().num_layers; ++i) {
    for (const auto& l : lm->layer_layout(i).linears) {
      if (skipped_by_user(l.name, o.skip_modules)) {
        skipped.insert(l.name);
      } else {
        method.check_shape(l.out_features, l.in_features, o);
      }
    }
  }
  const int64_t T = calib::sample_length(o.calibration, lm->info().max_positions);
  const std::vector<int64_t> ids = calib::calibration_ids(o.calibration, in.dir, T);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(ctx.seed);
  calib::LayerDriver driver(*lm, ids, o.calibration.num_calibration_samples, T, gen);

  // A method that calibrates nothing still runs layer by layer when given calibration data:
  // its output error is then measured like a calibrated method's.
  class Uncalibrated : public calib::LayerMethod {
   public:
    Uncalibrated(const Method& m, const QuantizeOptions& o) : m_(m), o_(o) {}
    bool true_sequential() const override { return false; }
    calib::Compressed compress(const std::string&, const at::Tensor& w, const calib::LinearStats&) override {
      calib::Compressed c;
      c.packed = m_.quantize(w, o_);
      return c;
    }

   private:
    const Method& m_;
    const QuantizeOptions& o_;
  };
  // --skip_modules: those Linears keep their weights.
  class Skipping : public calib::LayerMethod {
   public:
    Skipping(std::unique_ptr<calib::LayerMethod> inner, const std::set<std::string>& skipped)
        : inner_(std::move(inner)), skipped_(skipped) {}
    calib::Collect collect() const override { return inner_->collect(); }
    bool true_sequential() const override { return inner_->true_sequential(); }
    calib::Compressed compress(const std::string& n, const at::Tensor& w, const calib::LinearStats& s) override {
      if (skipped_.count(n)) {
        calib::Compressed c;
        c.dense = w;
        return c;
      }
      return inner_->compress(n, w, s);
    }
    void compress_layer(calib::LayerJob& job) override {
      if (skipped_.empty()) return inner_->compress_layer(job);
      calib::LayerMethod::compress_layer(job);
    }
    void restored(int64_t i, const std::map<std::string, at::Tensor>& e) override { inner_->restored(i, e); }

   private:
    std::unique_ptr<calib::LayerMethod> inner_;
    const std::set<std::string>& skipped_;
  };
  Skipping layer_method(method.layer_method ? method.layer_method(o) : std::make_unique<Uncalibrated>(method, o), skipped);

  calib::LayerwiseOptions lo;
  lo.state_dir = calib::state_dir_for(o.output_dir);
  QuantizeOptions copy = o;
  lo.fingerprint = calib::run_fingerprint("quantize", in.dir, option_fields(copy), ctx);
  const calib::LayerwiseResult result = calib::run_layerwise(*lm, driver, layer_method, lo, ctx);

  // Write everything the model now holds: packed Linears, and every other tensor in float16.
  model::WeightCount out_count;
  nlohmann::json layers = nlohmann::json::object();
  std::map<std::string, nlohmann::json> per_linear;
  for (const auto& l : result.layers) {
    for (const auto& [name, v] : l.linears) per_linear[name] = v;
  }
  int64_t quantized_params = 0, quantized_bytes = 0;
  double damp_used = 0.0;
  for (const auto& [name, packed] : lm->packed_weights()) {
    const std::string module = name.substr(0, name.size() - 7);
    for (const auto& [k, t] : packed->state_dict(module + ".")) out.add_tensor(k, t);
    const at::Tensor deq = packed->dequantize();
    quantized_params += deq.numel();
    quantized_bytes += packed->nbytes();
    out_count.add(deq, true, packed->nbytes());
    nlohmann::json entry = per_linear.count(module) ? per_linear[module] : nlohmann::json::object();
    entry["bits_per_weight"] = packed->bits_per_weight();
    damp_used = std::max(damp_used, entry.value("damp_percent", 0.0));
    layers[module] = entry;
  }
  std::vector<std::string> dense_modules = {"lm_head"};
  for (const auto& [name, t] : lm->named_parameters()) {
    if (name == "lm_head.weight" && in.tied) continue;
    const bool linear_weight = is_decoder_linear_weight(name, t);
    if (linear_weight) dense_modules.push_back(module_of(name));
    if (kDenseAlways.count(module_of(name))) dense_modules.push_back(module_of(name));
    const at::Tensor h = t.to(c10::kCPU, c10::kHalf);
    out.add_tensor(name, h);
    out_count.add(h, linear_weight, h.numel() * static_cast<int64_t>(c10::elementSize(ctx.dtype)));
  }
  nlohmann::json run = {{"calibration", {{"file", o.calibration.calibration_file},
                                         {"samples", o.calibration.num_calibration_samples},
                                         {"seq_len", T},
                                         {"tokens", static_cast<int64_t>(ids.size())}}},
                        {"mean_output_error", result.mean_output_error()},
                        {"resumed_layers", result.resumed_layers}};
  nlohmann::json per_layer = result.to_json();
  for (auto& l : per_layer) l.erase("linears");  // they are under "layers"
  run["per_layer"] = per_layer;
  if (o.quantization_method == "gptq") run["damp_percent"] = damp_used;
  nlohmann::json m = finish(o, method, in, out, in_count, out_count, layers, dense_modules, quantized_params, quantized_bytes, run);
  out.commit("metrics.json", decorate(m));
  calib::remove_state(lo.state_dir);
  log_info("wrote " + out.final_dir());
  return m;
}

}  // namespace

nlohmann::json run_quantize(const QuantizeOptions& o, const RunContext& ctx,
                            const std::function<nlohmann::json(const nlohmann::json&)>& decorate) {
  validate(o);
  const Method& method = method_registry().get(o.quantization_method);
  const Input in = read_input(o);
  const int64_t compute_elem = static_cast<int64_t>(c10::elementSize(ctx.dtype));

  io::ModelDirWriter out(o.output_dir, io::ModelDirWriter::Place::kNewDirectory, o.overwrite);
  at::NoGradGuard no_grad;
  // The calibrated path allocates activations in every operation: glibc's own heap policy
  // serves it (mapping each large block separately costs more in page faults than it saves).
  if (method.layer_method || !o.calibration.calibration_file.empty()) return run_calibrated(o, method, in, out, ctx, decorate);
  // Streaming: per-tensor temporaries are large and short-lived; have glibc map them
  // separately so that freeing returns them to the system (its adaptive threshold would
  // otherwise keep them in the heap, and the peak resident size would grow tensor after tensor).
  mallopt(M_MMAP_THRESHOLD, 1 << 20);

  // Zero-copy views on the memory-mapped input files; each is read, used and released.
  io::StateDict input = io::load_weights(in.dir);
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
    if (!seen.insert(key).second) throw InputError(in.dir + ": tensor '" + key + "' appears twice");
    if (key == "lm_head.weight" && in.tied) continue;  // tied to embed_tokens, as transformers saves it
    check_dtype(in.dir, key, tensor);
    const int64_t compute_bytes = tensor.numel() * compute_elem;
    const bool decoder_linear = is_decoder_linear_weight(key, tensor);
    const std::string module = decoder_linear ? module_of(key) : "";
    model::WeightCount this_tensor;  // counted once, for the input and (left dense) the output
    this_tensor.add(tensor, decoder_linear, compute_bytes);
    in_count += this_tensor;
    if (decoder_linear && !skipped_by_user(module, o.skip_modules)) {
      method.check_shape(tensor.size(0), tensor.size(1), o);
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
  for (const auto& m : kDenseAlways) {
    if (seen.count(m + ".weight")) dense_modules.push_back(m);
  }
  input.clear();
  nlohmann::json m = finish(o, method, in, out, in_count, out_count, layers, dense_modules, quantized_params, quantized_bytes,
                            nlohmann::json::object());
  out.commit("metrics.json", decorate(m));
  log_info("wrote " + out.final_dir());
  return m;
}

std::vector<OptionField> option_fields(QuantizeOptions& o) {
  using R = OptionField::Role;
  std::vector<OptionField> all = {
      {"model_name_or_path", "model directory or hub id (offline cache)", &o.model_name_or_path, R::kInputModel, true},
      {"output_dir", "where the quantized model directory goes", &o.output_dir, R::kOutputDir, true},
      {"quantization_method", method_registry().joined_names() + " (each writes its own format; see the README)",
       &o.quantization_method},
      {"quantization_bits", "bitsandbytes: 4 or 8; rtn, gptq: 2, 3, 4 or 8; awq: 4", &o.quantization_bits},
      {"bnb_4bit_quant_type", "nf4 | fp4", &o.bnb_4bit_quant_type},
      {"bnb_4bit_use_double_quant", "true | false: quantize the absmax too", &o.bnb_4bit_use_double_quant},
      {"bnb_4bit_compute_dtype", "recorded for transformers: float32 | bfloat16 | float16", &o.bnb_4bit_compute_dtype},
      {"blocksize", "4-bit block size: a power of two from 32 to 4096", &o.blocksize},
      {"group_size", "rtn, gptq, awq: input columns per scale (-1 = per row)", &o.group_size},
      {"sym", "rtn, gptq: true | false (false: zero points, written as gptq_v2)", &o.sym},
      {"desc_act", "gptq: true | false, act-order (columns by decreasing Hessian diagonal; static groups)", &o.desc_act},
      {"damp_percent", "gptq: dampening as a fraction of the Hessian's mean diagonal, in [0, 1)", &o.damp_percent},
      {"true_sequential", "gptq: true | false, calibrate [q,k,v] -> out_proj -> fc1 -> fc2 each on the ones before",
       &o.true_sequential},
      {"skip_modules", "module-name substrings to leave unquantized", &o.skip_modules},
      {"max_shard_size", "largest safetensors file, e.g. 5GB or 500MB", &o.max_shard_size},
  };
  auto fields = calib::option_fields(o.calibration);
  all.insert(all.end(), fields.begin(), fields.end());
  return all;
}

}  // namespace llmc::quant
