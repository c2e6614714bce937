// Private: AWQ (activation-aware weight quantization, docs/methods.md) as a calibrated layer
// method: per scale group a grid search of input-channel scales, folded into the operation
// before; then the clip search; then 4-bit group-wise codes in the AutoAWQ GEMM layout.
#pragma once

#include <memory>

#include "llmc/calib/calibration.h"

namespace llmc::quant {

struct AwqSettings {
  int64_t group_size{128};
  int64_t n_grid{20};          // ratios 0, 1/n, ..., (n-1)/n; 1 = ratio 0 only (plain RTN scales)
  bool duo_scaling{true};      // AutoAWQ's default: activation and weight magnitudes
  bool clip{true};             // the clip search (every Linear but q/k)
  int64_t clip_tokens{512};    // tokens the clip search looks at
};

std::unique_ptr<calib::LayerMethod> make_awq_method(const AwqSettings& settings);

}  // namespace llmc::quant
