// The trainer's optimizer and learning-rate schedules, written out so that their state is
// plain tensors (saved in checkpoints as safetensors) and their arithmetic is PyTorch's:
// AdamW as torch.optim.AdamW (decoupled weight decay, bias-corrected moments), schedules as
// transformers' get_*_schedule_with_warmup, clipping as clip_grad_norm_.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "llmc/io/state_dict.h"

namespace llmc::distill {

struct AdamWOptions {
  double beta1{0.9};
  double beta2{0.999};
  double eps{1e-8};
  double weight_decay{0.0};
};

struct TrainableParameter {
  std::string name;
  at::Tensor value;  // a leaf that requires grad
  bool decay{true};  // weight decay applies (not to biases and LayerNorm weights, as transformers' Trainer)
};

class AdamW {
 public:
  AdamW(std::vector<TrainableParameter> params, AdamWOptions options);

  // One update with learning rate lr from the parameters' .grad() (missing grads: skipped).
  void step(double lr);
  void zero_grad();
  int64_t steps() const { return step_; }
  const std::vector<TrainableParameter>& parameters() const { return params_; }

  // "<name>.exp_avg" and "<name>.exp_avg_sq" for every parameter.
  io::StateDict state() const;
  // InputError when a tensor is missing or has another shape.
  void load_state(const io::StateDict& state, int64_t steps, const std::string& source);

 private:
  std::vector<TrainableParameter> params_;
  std::vector<at::Tensor> exp_avg_;
  std::vector<at::Tensor> exp_avg_sq_;
  AdamWOptions options_;
  int64_t step_{0};
};

// The multiplier of the base learning rate before optimizer step `step` (0-based) of `total`:
// linear warmup over `warmup` steps, then linear decay to 0 | half-cosine to 0 | constant.
// UsageError for an unknown type.
double lr_multiplier(const std::string& type, int64_t step, int64_t warmup, int64_t total);

// Scales the gradients so that their global L2 norm is at most max_norm (max_norm <= 0: no
// clipping); returns the norm before clipping.
double clip_grad_norm(const std::vector<TrainableParameter>& params, double max_norm);

}  // namespace llmc::distill
