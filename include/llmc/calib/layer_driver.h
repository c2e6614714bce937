// The layer driver of the calibration layer: holds the inputs of one decoder layer for the
// calibration sequences, lets a method observe that layer's Linears, and advances to the next
// layer by running the current one (with whatever weights it has by then). Memory: one
// layer's activations.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "llmc/model/causal_lm.h"

namespace llmc::calib {

class LayerDriver {
 public:
  using Observer = std::function<void(const std::string& linear, const at::Tensor& input)>;

  // `samples` windows of `seq_len` tokens at random offsets of `ids` drawn from `gen`,
  // embedded for layer 0 in batches of `batch`. InputError when `ids` is shorter than one
  // window or than 2 tokens.
  LayerDriver(model::CausalLM& model, const std::vector<int64_t>& ids, int64_t samples, int64_t seq_len,
              at::Generator& gen, int64_t batch = 8);

  int64_t layer() const { return layer_; }  // the layer whose inputs are held
  int64_t num_layers() const { return model_.info().num_layers; }
  // The held inputs (one tensor [batch, T, H] per batch) and their additive attention masks.
  const std::vector<at::Tensor>& inputs() const { return hidden_; }
  const std::vector<at::Tensor>& masks() const { return masks_; }
  // Runs the current layer over every batch, calling `observe` with the inputs of the Linears
  // in `only` (every Linear when empty). With `only` given, the layer stops as soon as all of
  // them were seen and another Linear is about to run.
  void observe(const Observer& observe, const std::set<std::string>& only = {});
  // The current layer's outputs for every batch (not kept).
  std::vector<at::Tensor> outputs();
  // Runs the current layer to produce the next layer's inputs.
  void advance();

 private:
  model::CausalLM& model_;
  std::vector<at::Tensor> hidden_;
  std::vector<at::Tensor> masks_;
  int64_t layer_{0};
};

}  // namespace llmc::calib
