// Private: the quantization methods behind a registry (docs/architecture.md: a new method is
// its functions here and one line in method_registry()).
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "llmc/calib/calibration.h"
#include "llmc/core/registry.h"
#include "llmc/model/packed_weight.h"
#include "llmc/quant/quantize.h"

namespace llmc::quant {

struct Method {
  // The checkpoint format it writes: config.json's quantization_config.quant_method.
  std::string format;
  // UsageError for options this method cannot take.
  std::function<void(const QuantizeOptions&)> validate;
  // UsageError when a Linear of this shape cannot be held (checked before any work).
  std::function<void(int64_t out, int64_t in, const QuantizeOptions&)> check_shape;
  // Packs one Linear weight (float32 [out, in]) without calibration; null for calibrated methods.
  std::function<std::unique_ptr<model::PackedWeight>(const at::Tensor&, const QuantizeOptions&)> quantize;
  // The calibrated form (a layer method of the shared calibration layer); null when the
  // method calibrates nothing (then --calibration_file only measures its output error).
  std::function<std::unique_ptr<calib::LayerMethod>(const QuantizeOptions&)> layer_method;
  // The config.json "quantization_config" block; `skipped` are the module names left dense,
  // `run` what the run measured (damp_percent actually used, ...).
  std::function<nlohmann::json(const QuantizeOptions&, const std::vector<std::string>& skipped, const nlohmann::json& run)>
      config_block;
  // Extra files for the output directory (name -> JSON), e.g. quantize_config.json.
  std::function<std::map<std::string, nlohmann::json>(const QuantizeOptions&, const std::string& source,
                                                      const nlohmann::json& run)>
      extra_files;
};

const Registry<Method>& method_registry();

}  // namespace llmc::quant
