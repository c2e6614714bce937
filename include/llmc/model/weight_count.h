// The size figures of a model, counted one way whether the weights come from a file (quantize,
// prune) or from a loaded model (evaluate, distill): parameters (logical elements; a packed
// 4-bit weight counts its unpacked elements), non-zero parameters, bytes as held in memory,
// and the sparsity of the decoder layers' linear weights (exact zeros among them).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>

namespace llmc::model {

class CausalLM;

struct WeightCount {
  int64_t num_parameters{0};
  int64_t nonzero_parameters{0};
  int64_t memory_footprint_bytes{0};
  int64_t linear_zeros{0};  // exact zeros among the decoder-layer linear weights
  int64_t linear_total{0};

  // A tensor's values (for a packed weight: its dequantized values) held in `memory_bytes`
  // bytes (-1: its own numel * element size).
  void add(const at::Tensor& values, bool decoder_linear, int64_t memory_bytes = -1);
  WeightCount& operator+=(const WeightCount& other);
  double sparsity() const;
  // {"path", "num_parameters", "disk_size_bytes", "memory_footprint_bytes", "sparsity"}: the
  // input / output block of a tool's metrics.json.
  nlohmann::json block(const std::string& path, uint64_t disk_size_bytes) const;
};

// A loaded model's figures; tied weights count once; packed weights count their packed bytes.
WeightCount count_weights(const CausalLM& model);

}  // namespace llmc::model
