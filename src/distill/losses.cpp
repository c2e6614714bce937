#include "llmc/distill/losses.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/cross_entropy_loss.h>
#include <ATen/ops/log_softmax.h>
#include <ATen/ops/mse_loss.h>
#include <ATen/ops/sum.h>

#include "llmc/core/error.h"
#include "llmc/core/registry.h"

namespace llmc::distill {

namespace {

// float16/bfloat16 logits are compared in float32; float32/float64 stay as they are.
at::Tensor wide(const at::Tensor& x) {
  return x.scalar_type() == c10::kHalf || x.scalar_type() == c10::kBFloat16 ? x.to(c10::kFloat) : x;
}

// Logits of the predicted positions, flattened: [B * (T - 1), V].
at::Tensor predicting(const at::Tensor& logits) {
  return logits.slice(1, 0, logits.size(1) - 1).reshape({-1, logits.size(-1)});
}

at::Tensor shared(const at::Tensor& logits, int64_t vocab) {
  return vocab > 0 && vocab < logits.size(-1) ? logits.slice(-1, 0, vocab) : logits;
}

void require_teacher(const LossInputs& in, const char* name) {
  if (!in.teacher_logits.defined()) throw UsageError(std::string("the ") + name + " loss needs a teacher");
}

LossValue kl_loss(const LossInputs& in) {
  require_teacher(in, "kl");
  const at::Tensor hard = next_token_cross_entropy(in.student_logits, in.input_ids);
  const at::Tensor soft = soft_kl(shared(in.student_logits, in.shared_vocab), shared(in.teacher_logits, in.shared_vocab),
                                  in.temperature);
  LossValue v;
  v.total = soft * in.alpha + hard * (1.0 - in.alpha);
  v.parts = {{"soft", soft.item<double>()}, {"hard", hard.item<double>()}};
  return v;
}

LossValue mse_loss(const LossInputs& in) {
  require_teacher(in, "mse");
  LossValue v;
  v.total = logits_mse(shared(in.student_logits, in.shared_vocab), shared(in.teacher_logits, in.shared_vocab));
  v.parts = {{"mse", v.total.item<double>()}};
  return v;
}

LossValue ce_loss(const LossInputs& in) {
  LossValue v;
  v.total = next_token_cross_entropy(in.student_logits, in.input_ids);
  v.parts = {{"hard", v.total.item<double>()}};
  return v;
}

const Registry<Loss>& loss_registry() {
  static const Registry<Loss> registry = [] {
    Registry<Loss> r("distillation loss");
    r.add("kl", Loss{true, kl_loss});
    r.add("mse", Loss{true, mse_loss});
    r.add("ce", Loss{false, ce_loss});
    return r;
  }();
  return registry;
}

}  // namespace

const Loss& loss(const std::string& name) { return loss_registry().get(name); }
std::vector<std::string> loss_names() { return loss_registry().names(); }

at::Tensor next_token_cross_entropy(const at::Tensor& logits, const at::Tensor& ids) {
  const at::Tensor targets = ids.slice(1, 1, ids.size(1)).reshape({-1});
  return at::cross_entropy_loss(wide(predicting(logits)), targets);
}

at::Tensor soft_kl(const at::Tensor& student_logits, const at::Tensor& teacher_logits, double temperature) {
  const at::Tensor s = at::log_softmax(wide(predicting(student_logits)) / temperature, -1);
  const at::Tensor t = at::log_softmax(wide(predicting(teacher_logits)).to(s.scalar_type()) / temperature, -1);
  // sum_v p_t (log p_t - log p_s), per predicted token.
  const at::Tensor kl = (t.exp() * (t - s)).sum(-1);
  return kl.mean() * (temperature * temperature);
}

at::Tensor logits_mse(const at::Tensor& student_logits, const at::Tensor& teacher_logits) {
  const at::Tensor s = wide(predicting(student_logits));
  return at::mse_loss(s, predicting(teacher_logits).to(s.scalar_type()));
}

}  // namespace llmc::distill
