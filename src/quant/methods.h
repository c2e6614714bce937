// Private: the quantization methods behind a registry (docs/architecture.md: a new method is
// its functions here and one line in method_registry()).
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "llmc/core/registry.h"
#include "llmc/model/packed_weight.h"
#include "llmc/quant/quantize.h"

namespace llmc::quant {

struct Method {
  // The checkpoint format it writes: config.json's quantization_config.quant_method.
  std::string format;
  // UsageError for options this method cannot take.
  std::function<void(const QuantizeOptions&)> validate;
  // Packs one Linear weight (float32 [out, in]).
  std::function<std::unique_ptr<model::PackedWeight>(const at::Tensor&, const QuantizeOptions&)> quantize;
  // The config.json "quantization_config" block; `skipped` are the module names left dense.
  std::function<nlohmann::json(const QuantizeOptions&, const std::vector<std::string>& skipped)> config_block;
  // Extra files for the output directory (name -> JSON), e.g. quantize_config.json.
  std::function<std::map<std::string, nlohmann::json>(const QuantizeOptions&, const std::string& source)> extra_files;
};

const Registry<Method>& method_registry();

}  // namespace llmc::quant
