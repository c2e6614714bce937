// The `quantize` tool as one library call: reads a model one tensor at a time from its
// memory-mapped files, quantizes every Linear inside the decoder layers with the chosen
// method, and writes a Hugging Face model directory (docs/formats.md §5, §6) plus metrics.json.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "llmc/calib/options.h"
#include "llmc/core/options.h"
#include "llmc/core/run_context.h"

namespace llmc::quant {

struct QuantizeOptions {
  std::string model_name_or_path;
  std::string revision{"main"};
  std::string output_dir;
  std::string quantization_method{"bitsandbytes"};  // the method registry: bitsandbytes | rtn | gptq | awq
  int64_t quantization_bits{4};
  std::string bnb_4bit_quant_type{"nf4"};
  bool bnb_4bit_use_double_quant{true};
  std::string bnb_4bit_compute_dtype{"bfloat16"};
  int64_t blocksize{64};
  int64_t group_size{128};
  bool sym{true};              // rtn, gptq: symmetric codes (false: zero points, gptq_v2 layout)
  bool desc_act{false};        // gptq: act-order (static groups)
  double damp_percent{0.01};   // gptq: dampening, a fraction of mean(diag H)
  bool true_sequential{true};  // gptq: [q, k, v] -> out_proj -> fc1 -> fc2 within a layer
  calib::CalibrationOptions calibration;
  std::vector<std::string> skip_modules;  // module-name substrings kept unquantized
  std::string max_shard_size{"5GB"};
  bool overwrite{false};
};

// The flags of `quantize` (and the keys of a pipeline stage's options), bound to `o`.
std::vector<OptionField> option_fields(QuantizeOptions& o);

// What --quantization_method accepts (the method registry), and the checkpoint format each
// writes (quantization_config.quant_method: bitsandbytes, gptq).
std::vector<std::string> method_names();
std::string method_format(const std::string& method);

// UsageError (exit 2) for bad combinations, listing what is allowed.
void validate(const QuantizeOptions& options);

// `decorate` completes the metrics written to <output_dir>/metrics.json (the tool adds
// tool, llmc_version, status, elapsed_s, options). Returns the tool's own figures.
nlohmann::json run_quantize(const QuantizeOptions& options, const RunContext& ctx,
                            const std::function<nlohmann::json(const nlohmann::json&)>& decorate);

}  // namespace llmc::quant
