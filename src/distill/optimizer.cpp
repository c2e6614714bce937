#include "llmc/distill/optimizer.h"

#include <ATen/TensorOperators.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/zeros_like.h>

#include <cmath>
#include <functional>

#include "llmc/core/error.h"
#include "llmc/core/registry.h"

namespace llmc::distill {

AdamW::AdamW(std::vector<TrainableParameter> params, AdamWOptions options)
    : params_(std::move(params)), options_(options) {
  at::NoGradGuard no_grad;
  for (const auto& p : params_) {
    exp_avg_.push_back(at::zeros_like(p.value));
    exp_avg_sq_.push_back(at::zeros_like(p.value));
  }
}

void AdamW::step(double lr) {
  at::NoGradGuard no_grad;
  ++step_;
  const double b1 = options_.beta1, b2 = options_.beta2;
  const double bias_correction1 = 1.0 - std::pow(b1, static_cast<double>(step_));
  const double bias_correction2_sqrt = std::sqrt(1.0 - std::pow(b2, static_cast<double>(step_)));
  for (size_t i = 0; i < params_.size(); ++i) {
    at::Tensor p = params_[i].value;
    const at::Tensor& g = p.grad();
    if (!g.defined()) continue;
    if (params_[i].decay && options_.weight_decay != 0.0) p.mul_(1.0 - lr * options_.weight_decay);
    exp_avg_[i].lerp_(g, 1.0 - b1);
    exp_avg_sq_[i].mul_(b2).addcmul_(g, g, 1.0 - b2);
    const at::Tensor denom = (exp_avg_sq_[i].sqrt() / bias_correction2_sqrt).add_(options_.eps);
    p.addcdiv_(exp_avg_[i], denom, -lr / bias_correction1);
  }
}

void AdamW::zero_grad() {
  for (auto& p : params_) {
    if (p.value.grad().defined()) p.value.mutable_grad() = at::Tensor();
  }
}

io::StateDict AdamW::state() const {
  io::StateDict out;
  for (size_t i = 0; i < params_.size(); ++i) {
    out[params_[i].name + ".exp_avg"] = exp_avg_[i];
    out[params_[i].name + ".exp_avg_sq"] = exp_avg_sq_[i];
  }
  return out;
}

void AdamW::load_state(const io::StateDict& state, int64_t steps, const std::string& source) {
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    for (auto [suffix, slot] : {std::pair<const char*, at::Tensor*>{".exp_avg", &exp_avg_[i]}, {".exp_avg_sq", &exp_avg_sq_[i]}}) {
      auto it = state.find(params_[i].name + suffix);
      if (it == state.end()) throw InputError(source + ": optimizer state lacks '" + params_[i].name + suffix + "'");
      if (it->second.sizes() != slot->sizes()) {
        throw InputError(source + ": optimizer state '" + params_[i].name + suffix + "' has shape " +
                         io::shape_string(it->second.sizes()) + ", expected " + io::shape_string(slot->sizes()));
      }
      slot->copy_(it->second);
    }
  }
  step_ = steps;
}

namespace {

using Schedule = std::function<double(int64_t step, int64_t warmup, int64_t total)>;

double after_warmup_fraction(int64_t step, int64_t warmup, int64_t total) {
  return static_cast<double>(step - warmup) / static_cast<double>(std::max<int64_t>(1, total - warmup));
}

const Registry<Schedule>& schedule_registry() {
  static const Registry<Schedule> registry = [] {
    Registry<Schedule> r("lr_scheduler_type");
    r.add("linear", [](int64_t s, int64_t w, int64_t t) { return std::max(0.0, 1.0 - after_warmup_fraction(s, w, t)); });
    r.add("cosine", [](int64_t s, int64_t w, int64_t t) {
      return std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * after_warmup_fraction(s, w, t))));
    });
    r.add("constant", [](int64_t, int64_t, int64_t) { return 1.0; });
    return r;
  }();
  return registry;
}

}  // namespace

double lr_multiplier(const std::string& type, int64_t step, int64_t warmup, int64_t total) {
  const Schedule& schedule = schedule_registry().get(type);
  if (step < warmup) return static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, warmup));
  return schedule(step, warmup, total);
}

double clip_grad_norm(const std::vector<TrainableParameter>& params, double max_norm) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> norms;
  for (const auto& p : params) {
    if (p.value.grad().defined()) norms.push_back(p.value.grad().norm());
  }
  if (norms.empty()) return 0.0;
  const double total = at::stack(norms).norm().item<double>();
  if (max_norm > 0.0) {
    const double coef = max_norm / (total + 1e-6);
    if (coef < 1.0) {
      for (const auto& p : params) {
        if (p.value.grad().defined()) p.value.grad().mul_(coef);
      }
    }
  }
  return total;
}

}  // namespace llmc::distill
