// Distillation losses, looked up by name (--distillation_loss). Every term is averaged over
// the predicted tokens: positions 0..T-2 of a block, each predicting the next token of the
// block. Logits are compared over the ids both models have (shared_vocab).
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace llmc::distill {

struct LossInputs {
  at::Tensor student_logits;  // [B, T, Vs]
  at::Tensor teacher_logits;  // [B, T, Vt]; undefined when the loss needs no teacher
  at::Tensor input_ids;       // [B, T]: the targets are ids[:, 1:]
  int64_t shared_vocab{0};    // 0 = the student's vocab
  double temperature{3.0};
  double alpha{0.5};
};

struct LossValue {
  at::Tensor total;                     // scalar, differentiable with respect to the student
  std::map<std::string, double> parts;  // named terms, for logs and metrics
};

struct Loss {
  bool needs_teacher{false};
  std::function<LossValue(const LossInputs&)> compute;
};

// UsageError listing the names for an unknown loss.
const Loss& loss(const std::string& name);
std::vector<std::string> loss_names();

// The terms (exposed for tests):
// shifted next-token cross entropy of logits [B, T, V] against ids [B, T], mean per predicted token.
at::Tensor next_token_cross_entropy(const at::Tensor& logits, const at::Tensor& ids);
// KL(softmax(t/T) || softmax(s/T)) * T^2, mean per predicted token.
at::Tensor soft_kl(const at::Tensor& student_logits, const at::Tensor& teacher_logits, double temperature);
// Mean squared error over every element (predicted tokens x vocab).
at::Tensor logits_mse(const at::Tensor& student_logits, const at::Tensor& teacher_logits);

}  // namespace llmc::distill
