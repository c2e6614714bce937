// The shared layer driver (docs/architecture.md) of calibration-based methods (Wanda, activation
// importance; later GPTQ, AWQ, SparseGPT): it holds the inputs of one decoder layer for the
// calibration sequences, lets a method observe that layer's Linears, and advances to the next
// layer by running the current one (with whatever weights it has by then). Memory: one
// layer's activations.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <string>
#include <vector>

#include "llmc/model/causal_lm.h"

namespace llmc::model {

class LayerDriver {
 public:
  using Observer = std::function<void(const std::string& linear, const at::Tensor& input)>;

  // `samples` windows of `seq_len` tokens (capped at the text and the model's positions) at
  // random offsets of `ids` drawn from `gen`, embedded for layer 0 in batches of `batch`.
  // InputError when there are fewer than 2 tokens.
  LayerDriver(CausalLM& model, const std::vector<int64_t>& ids, int64_t samples, int64_t seq_len, at::Generator& gen,
              int64_t batch = 8);

  int64_t layer() const { return layer_; }  // the layer whose inputs are held
  int64_t num_layers() const { return model_.info().num_layers; }
  // The held inputs (one tensor [batch, T, H] per batch).
  const std::vector<at::Tensor>& inputs() const { return hidden_; }
  // Runs the current layer over every batch, calling `observe` with its Linears' inputs.
  void observe(const Observer& observe);
  // Runs the current layer to produce the next layer's inputs.
  void advance();

 private:
  CausalLM& model_;
  std::vector<at::Tensor> hidden_;
  std::vector<at::Tensor> masks_;
  int64_t layer_{0};
};

}  // namespace llmc::model
