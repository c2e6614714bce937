#include "methods.h"

#include <numeric>

#include "awq.h"
#include "gptq.h"
#include "llmc/core/error.h"
#include "llmc/core/logging.h"

namespace llmc::quant {

namespace {

// ---------------------------------------------------------------- bitsandbytes

void validate_bnb(const QuantizeOptions& o) {
  if (o.quantization_bits != 4 && o.quantization_bits != 8) {
    throw UsageError("bitsandbytes quantizes to 4 bits (nf4, fp4) or 8 bits (LLM.int8); --quantization_bits " +
                     std::to_string(o.quantization_bits) + " is not allowed");
  }
  if (o.quantization_bits == 4) {
    if (o.bnb_4bit_quant_type != "nf4" && o.bnb_4bit_quant_type != "fp4") {
      throw UsageError("--bnb_4bit_quant_type: expected nf4 or fp4, found '" + o.bnb_4bit_quant_type + "'");
    }
    if (o.blocksize < 32 || o.blocksize > 4096 || (o.blocksize & (o.blocksize - 1)) != 0) {
      throw UsageError("--blocksize: expected a power of two from 32 to 4096 (bitsandbytes' range), found " +
                       std::to_string(o.blocksize));
    }
  }
  static const std::vector<std::string> kDtypes = {"float32", "bfloat16", "float16"};
  if (std::find(kDtypes.begin(), kDtypes.end(), o.bnb_4bit_compute_dtype) == kDtypes.end()) {
    throw UsageError("--bnb_4bit_compute_dtype: expected float32, bfloat16 or float16, found '" +
                     o.bnb_4bit_compute_dtype + "'");
  }
}

void any_shape(int64_t, int64_t, const QuantizeOptions&) {}

std::unique_ptr<model::PackedWeight> quantize_bnb(const at::Tensor& w, const QuantizeOptions& o) {
  if (o.quantization_bits == 8) return model::quantize_int8(w);
  model::Bnb4Options b;
  b.quant_type = o.bnb_4bit_quant_type;
  b.blocksize = o.blocksize;
  b.double_quant = o.bnb_4bit_use_double_quant;
  b.dtype = "float16";
  return model::quantize_bnb4(w, b);
}

nlohmann::json bnb_config(const QuantizeOptions& o, const std::vector<std::string>& skipped, const nlohmann::json&) {
  const bool four = o.quantization_bits == 4;
  return {{"_load_in_4bit", four},
          {"_load_in_8bit", !four},
          {"bnb_4bit_compute_dtype", o.bnb_4bit_compute_dtype},
          {"bnb_4bit_quant_storage", "uint8"},
          {"bnb_4bit_quant_type", o.bnb_4bit_quant_type},
          {"bnb_4bit_use_double_quant", o.bnb_4bit_use_double_quant},
          {"llm_int8_enable_fp32_cpu_offload", false},
          {"llm_int8_has_fp16_weight", false},
          {"llm_int8_skip_modules", skipped},
          {"llm_int8_threshold", 6.0},
          {"load_in_4bit", four},
          {"load_in_8bit", !four},
          {"quant_method", "bitsandbytes"}};
}

std::map<std::string, nlohmann::json> no_files(const QuantizeOptions&, const std::string&, const nlohmann::json&) {
  return {};
}

// ---------------------------------------------------------------- the GPTQ layout: rtn and gptq

void validate_gptq_layout(const QuantizeOptions& o, const std::string& name) {
  if (o.quantization_bits != 2 && o.quantization_bits != 3 && o.quantization_bits != 4 && o.quantization_bits != 8) {
    throw UsageError(name + " quantizes to 2, 3, 4 or 8 bits; --quantization_bits " + std::to_string(o.quantization_bits) +
                     " is not allowed");
  }
  if (o.group_size != -1 && o.group_size < 1) {
    throw UsageError("--group_size: expected -1 (per row) or a positive width, found " + std::to_string(o.group_size));
  }
}

void validate_rtn(const QuantizeOptions& o) {
  validate_gptq_layout(o, "rtn");
  if (o.desc_act) throw UsageError("--desc_act orders columns by calibration statistics: use --quantization_method gptq");
}

void validate_gptq(const QuantizeOptions& o) {
  validate_gptq_layout(o, "gptq");
  if (!(o.damp_percent >= 0.0 && o.damp_percent < 1.0)) {
    throw UsageError("--damp_percent must be in [0, 1), found " + std::to_string(o.damp_percent));
  }
  if (o.calibration.calibration_file.empty()) throw UsageError("gptq needs calibration data: pass --calibration_file");
}

void check_gptq_shape(int64_t out, int64_t in, const QuantizeOptions& o) {
  const int64_t bits = o.quantization_bits;
  const int64_t pack = 32 / std::gcd<int64_t>(32, bits);
  if (in % pack != 0 || out % pack != 0) {
    throw UsageError("the GPTQ layout packs " + std::to_string(pack) + " " + std::to_string(bits) +
                     "-bit values at a time: a " + std::to_string(out) + " x " + std::to_string(in) +
                     " Linear cannot be packed (both widths must be multiples of " + std::to_string(pack) + ")" +
                     (o.desc_act ? "; --desc_act does not change this" : ""));
  }
  if (o.group_size != -1 && in % o.group_size != 0) {
    throw UsageError("--group_size " + std::to_string(o.group_size) + " does not divide the input width " + std::to_string(in) +
                     " of a Linear (use a divisor or -1)");
  }
}

std::unique_ptr<model::PackedWeight> quantize_rtn(const at::Tensor& w, const QuantizeOptions& o) {
  return model::quantize_rtn_gptq(w, {o.quantization_bits, o.group_size, o.sym});
}

class GptqMethod : public calib::LayerMethod {
 public:
  explicit GptqMethod(const QuantizeOptions& o) : o_(o) {}
  bool true_sequential() const override { return o_.true_sequential; }
  calib::Compressed compress(const std::string& linear, const at::Tensor& w, const calib::LinearStats& stats) override {
    GptqSettings s;
    s.bits = o_.quantization_bits;
    s.group_size = o_.group_size;
    s.sym = o_.sym;
    s.desc_act = o_.desc_act;
    s.damp_percent = o_.damp_percent;
    const GptqResult r = gptq_quantize(w, stats.hessian, s);
    if (r.damp_retries > 0) {
      log_warn(linear + ": the Hessian was not positive definite with --damp_percent " + std::to_string(o_.damp_percent) +
               "; used " + std::to_string(r.damp_used));
    }
    calib::Compressed c;
    c.packed = model::pack_gptq(r.codes, r.scales, o_.sym ? at::Tensor() : r.zeros, r.g_idx,
                                {o_.quantization_bits, o_.group_size, o_.sym});
    c.info = {{"damp_percent", r.damp_used}, {"dead_inputs", static_cast<double>(r.dead_inputs)}};
    return c;
  }

 private:
  QuantizeOptions o_;
};

// What was done, in the GPTQ loaders' terms. rtn records no calibration settings it never
// used (damp_percent, true_sequential); loaders that want them take their defaults.
nlohmann::json gptq_layout_config(const QuantizeOptions& o, const std::string& method, const nlohmann::json& run) {
  const std::string format = o.sym ? "gptq" : "gptq_v2";
  nlohmann::json c = {{"quant_method", "gptq"},
                      {"bits", o.quantization_bits},
                      {"group_size", o.group_size},
                      {"desc_act", o.desc_act},
                      {"sym", o.sym},
                      {"static_groups", o.desc_act},
                      {"checkpoint_format", format},
                      {"format", format},
                      {"lm_head", false},
                      {"pack_dtype", "int32"},
                      {"block_name_to_quantize", "model.decoder.layers"},
                      {"meta", {{"quantizer", {"llmc:" + method}}, {"method", method}}}};
  if (method == "gptq") {
    c["damp_percent"] = run.value("damp_percent", o.damp_percent);
    c["true_sequential"] = o.true_sequential;
    c["meta"]["damp_auto_increment"] = 0.01;
  }
  return c;
}

std::map<std::string, nlohmann::json> gptq_layout_files(const QuantizeOptions& o, const std::string& source,
                                                        const std::string& method, const nlohmann::json& run) {
  const nlohmann::json c = gptq_layout_config(o, method, run);
  nlohmann::json f = {{"model_name_or_path", source}, {"model_file_base_name", "model"}};
  for (const char* k : {"bits", "group_size", "desc_act", "static_groups", "sym", "quant_method", "checkpoint_format", "meta",
                        "damp_percent", "true_sequential"}) {
    if (c.contains(k)) f[k] = c[k];
  }
  return {{"quantize_config.json", f}};
}

// ---------------------------------------------------------------- awq

void validate_awq(const QuantizeOptions& o) {
  if (o.quantization_bits != 4) {
    throw UsageError("awq writes the AutoAWQ GEMM layout, which holds 4-bit codes only; --quantization_bits " +
                     std::to_string(o.quantization_bits) + " is not allowed");
  }
  if (o.group_size < 1 && o.group_size != -1) {
    throw UsageError("--group_size: expected -1 (per row) or a positive width, found " + std::to_string(o.group_size));
  }
  if (o.calibration.calibration_file.empty()) throw UsageError("awq needs calibration data: pass --calibration_file");
  if (!o.skip_modules.empty()) {
    throw UsageError("--skip_modules cannot be combined with awq (its scales are folded across a layer's modules)");
  }
  if (o.desc_act) throw UsageError("--desc_act applies to gptq only");
}

void check_awq_shape(int64_t out, int64_t in, const QuantizeOptions& o) {
  if (out % 8 != 0) {
    throw UsageError("the AWQ GEMM layout packs 8 output channels per word: a Linear with " + std::to_string(out) +
                     " outputs cannot be packed");
  }
  if (o.group_size != -1 && in % o.group_size != 0) {
    throw UsageError("--group_size " + std::to_string(o.group_size) + " does not divide the input width " + std::to_string(in));
  }
}

std::unique_ptr<calib::LayerMethod> awq_method(const QuantizeOptions& o) {
  AwqSettings s;
  s.group_size = o.group_size;
  return make_awq_method(s);
}

nlohmann::json awq_config(const QuantizeOptions& o, const std::vector<std::string>& skipped, const nlohmann::json&) {
  nlohmann::json c = {{"quant_method", "awq"}, {"bits", 4},          {"group_size", o.group_size},
                      {"zero_point", true},    {"version", "gemm"}, {"modules_to_not_convert", nullptr}};
  std::vector<std::string> inside;
  for (const auto& m : skipped) {
    if (m != "lm_head") inside.push_back(m);
  }
  if (!inside.empty()) c["modules_to_not_convert"] = inside;
  return c;
}

}  // namespace

const Registry<Method>& method_registry() {
  static const Registry<Method> registry = [] {
    Registry<Method> r("quantization method");
    r.add("bitsandbytes", Method{"bitsandbytes", validate_bnb, any_shape, quantize_bnb, nullptr, bnb_config, no_files});
    r.add("rtn", Method{"gptq", validate_rtn, check_gptq_shape, quantize_rtn, nullptr,
                        [](const QuantizeOptions& o, const std::vector<std::string>&, const nlohmann::json& run) {
                          return gptq_layout_config(o, "rtn", run);
                        },
                        [](const QuantizeOptions& o, const std::string& src, const nlohmann::json& run) {
                          return gptq_layout_files(o, src, "rtn", run);
                        }});
    r.add("gptq", Method{"gptq", validate_gptq, check_gptq_shape, nullptr,
                         [](const QuantizeOptions& o) -> std::unique_ptr<calib::LayerMethod> { return std::make_unique<GptqMethod>(o); },
                         [](const QuantizeOptions& o, const std::vector<std::string>&, const nlohmann::json& run) {
                           return gptq_layout_config(o, "gptq", run);
                         },
                         [](const QuantizeOptions& o, const std::string& src, const nlohmann::json& run) {
                           return gptq_layout_files(o, src, "gptq", run);
                         }});
    r.add("awq", Method{"awq", validate_awq, check_awq_shape, nullptr, awq_method, awq_config, no_files});
    return r;
  }();
  return registry;
}

}  // namespace llmc::quant
