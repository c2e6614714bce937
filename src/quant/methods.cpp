#include "methods.h"

#include "llmc/core/error.h"

namespace llmc::quant {

namespace {

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

std::unique_ptr<model::PackedWeight> quantize_bnb(const at::Tensor& w, const QuantizeOptions& o) {
  if (o.quantization_bits == 8) return model::quantize_int8(w);
  model::Bnb4Options b;
  b.quant_type = o.bnb_4bit_quant_type;
  b.blocksize = o.blocksize;
  b.double_quant = o.bnb_4bit_use_double_quant;
  b.dtype = "float16";
  return model::quantize_bnb4(w, b);
}

nlohmann::json bnb_config(const QuantizeOptions& o, const std::vector<std::string>& skipped) {
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

void validate_rtn(const QuantizeOptions& o) {
  if (o.quantization_bits != 2 && o.quantization_bits != 3 && o.quantization_bits != 4 && o.quantization_bits != 8) {
    throw UsageError("rtn quantizes to 2, 3, 4 or 8 bits; --quantization_bits " + std::to_string(o.quantization_bits) +
                     " is not allowed");
  }
  if (o.group_size != -1 && o.group_size < 1) {
    throw UsageError("--group_size: expected -1 (per row) or a positive width, found " + std::to_string(o.group_size));
  }
}

std::unique_ptr<model::PackedWeight> quantize_rtn(const at::Tensor& w, const QuantizeOptions& o) {
  model::GptqOptions g;
  g.bits = o.quantization_bits;
  g.group_size = o.group_size;
  return model::quantize_rtn_gptq(w, g);
}

// What rtn did, in the GPTQ loaders' terms: symmetric codes in the v1 layout, groups in
// natural order. rtn calibrates nothing, so no calibration settings (damp_percent,
// true_sequential) are recorded; loaders that want them take their defaults.
nlohmann::json gptq_config(const QuantizeOptions& o, const std::vector<std::string>&) {
  return {{"quant_method", "gptq"},
          {"bits", o.quantization_bits},
          {"group_size", o.group_size},
          {"desc_act", false},
          {"sym", true},
          {"static_groups", false},
          {"checkpoint_format", "gptq"},
          {"format", "gptq"},
          {"lm_head", false},
          {"pack_dtype", "int32"},
          {"block_name_to_quantize", "model.decoder.layers"},
          {"meta", {{"quantizer", {"llmc:rtn"}}, {"method", "rtn"}}}};
}

std::map<std::string, nlohmann::json> gptq_files(const QuantizeOptions& o, const std::string& source) {
  return {{"quantize_config.json",
           {{"bits", o.quantization_bits}, {"group_size", o.group_size}, {"desc_act", false}, {"static_groups", false},
            {"sym", true}, {"model_name_or_path", source}, {"model_file_base_name", "model"}, {"quant_method", "gptq"},
            {"checkpoint_format", "gptq"}, {"meta", {{"quantizer", {"llmc:rtn"}}, {"method", "rtn"}}}}}};
}

std::map<std::string, nlohmann::json> no_files(const QuantizeOptions&, const std::string&) { return {}; }

}  // namespace

const Registry<Method>& method_registry() {
  static const Registry<Method> registry = [] {
    Registry<Method> r("quantization method");
    r.add("bitsandbytes", Method{"bitsandbytes", validate_bnb, quantize_bnb, bnb_config, no_files});
    r.add("rtn", Method{"gptq", validate_rtn, quantize_rtn, gptq_config, gptq_files});
    return r;
  }();
  return registry;
}

}  // namespace llmc::quant
