#include "llmc/eval/compare.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/argmax.h>
#include <ATen/ops/exp.h>
#include <ATen/ops/log.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros_like.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "llmc/core/error.h"

namespace llmc::eval {

namespace {

// Mean and its standard error (sample standard deviation / sqrt(n)); 0 for n < 2.
std::pair<double, double> mean_and_stderr(double sum, double sum_sq, int64_t n) {
  const double dn = static_cast<double>(n);
  const double mean = sum / dn;
  if (n < 2) return {mean, 0.0};
  const double var = std::max(0.0, (sum_sq / dn - mean * mean) * dn / (dn - 1.0));
  return {mean, std::sqrt(var / dn)};
}

}  // namespace

int64_t compare_rows_per_piece(int64_t width) { return std::max<int64_t>(1, (int64_t{1} << 18) / std::max<int64_t>(1, width)); }

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return std::nan("");
  std::sort(values.begin(), values.end());
  const double pos = p * static_cast<double>(values.size() - 1);
  const auto lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(values.size() - 1, lo + 1);
  const double frac = pos - static_cast<double>(lo);
  return values[lo] + (values[hi] - values[lo]) * frac;
}

void for_each_window_rows(const at::Tensor& logits, const at::Tensor& ids, const at::Tensor& mask,
                          const std::function<void(int64_t window, const at::Tensor& rows, const at::Tensor& targets)>& fn) {
  const at::Tensor lengths = mask.sum(1).to(c10::kCPU, c10::kLong).contiguous();
  for (int64_t b = 0; b < logits.size(0); ++b) {
    const int64_t len = lengths.data_ptr<int64_t>()[b];
    if (len < 2) continue;
    fn(b, logits[b].slice(0, 0, len - 1), ids[b].slice(0, 1, len));
  }
}

BaseDistribution base_from_logits(const at::Tensor& base_logits, int64_t shared) {
  BaseDistribution b;
  b.logits = base_logits.slice(-1, 0, shared);
  return b;
}

namespace {

// Row maxima, the exponentials below them and log Σ exp in float64.
struct Normalized {
  at::Tensor e;    // exp(x − max), in x's dtype
  at::Tensor sum;  // [n, 1] float64
  at::Tensor lse;  // [n, 1] float64
};

Normalized normalize(const at::Tensor& x) {
  Normalized r;
  const at::Tensor top = std::get<0>(x.max(-1, true));
  r.e = at::exp(x - top);
  r.sum = r.e.sum(-1, true, c10::kDouble);
  r.lse = top.to(c10::kDouble) + at::log(r.sum);
  return r;
}

}  // namespace

void CompareAccumulator::add(const at::Tensor& model_logits, const BaseDistribution& base, const at::Tensor& targets) {
  const int64_t n = model_logits.size(0);
  const int64_t shared = base.logits.size(1);
  if (model_logits.size(1) < shared || base.logits.size(0) != n || targets.numel() != n) {
    throw Error("compare: shapes of the model's and the base's rows differ");
  }
  const c10::ScalarType dt =
      model_logits.scalar_type() == c10::kDouble || base.logits.scalar_type() == c10::kDouble ? c10::kDouble : c10::kFloat;
  const at::Tensor tgt = targets.to(c10::kCPU, c10::kLong).reshape({n, 1});
  const int64_t step = compare_rows_per_piece(shared);
  for (int64_t r0 = 0; r0 < n; r0 += step) {
    const int64_t r1 = std::min(n, r0 + step);
    const at::Tensor xm = model_logits.slice(0, r0, r1).slice(1, 0, shared).to(c10::kCPU, dt);
    const at::Tensor xb = base.logits.slice(0, r0, r1).to(c10::kCPU, dt);
    const Normalized nb = normalize(xb), nm = normalize(xm);
    // KL = Σ p_b (x_b − x_m) − (lse_b − lse_m) Σ p_b over the ids the base gives mass.
    const at::Tensor p = nb.e / nb.sum.to(dt);
    const at::Tensor d = at::where(nb.e > 0, xb - xm, at::zeros_like(xb));
    const at::Tensor psum = p.sum(-1, false, c10::kDouble);
    const at::Tensor kl = ((p * d).sum(-1, false, c10::kDouble) - (nb.lse - nm.lse).squeeze(1) * psum).contiguous();
    const at::Tensor arg_b = base.argmax.defined() ? base.argmax.slice(0, r0, r1) : at::argmax(xb, -1);
    const at::Tensor same = (at::argmax(xm, -1) == arg_b).contiguous();
    const at::Tensor t = tgt.slice(0, r0, r1);
    const at::Tensor lm_t = (xm.gather(1, t).to(c10::kDouble) - nm.lse).reshape({-1}).contiguous();
    const at::Tensor lb_t = base.target_logp.defined() ? base.target_logp.slice(0, r0, r1).to(c10::kDouble).contiguous()
                                                       : (xb.gather(1, t).to(c10::kDouble) - nb.lse).reshape({-1}).contiguous();
    const double* klp = kl.data_ptr<double>();
    const bool* sp = same.data_ptr<bool>();
    const double* mp = lm_t.data_ptr<double>();
    const double* bp = lb_t.data_ptr<double>();
    for (int64_t i = 0; i < r1 - r0; ++i) {
      kl_.push_back(klp[i]);
      same_top_ += sp[i] ? 1 : 0;
      delta_p_.push_back(std::exp(mp[i]) - std::exp(bp[i]));
      nll_ -= mp[i];
      nll2_ += mp[i] * mp[i];
      nll_base_ -= bp[i];
      nll_base2_ += bp[i] * bp[i];
      nll_cross_ += mp[i] * bp[i];
    }
  }
}

nlohmann::json CompareAccumulator::summary() const {
  const int64_t n = count();
  if (n == 0) throw InputError("compare: no predicted token to compare");
  const double dn = static_cast<double>(n);
  double kl_sum = 0, kl_sq = 0, dp_sum = 0, dp_sq = 0, dp_4 = 0;
  for (double v : kl_) {
    kl_sum += v;
    kl_sq += v * v;
  }
  for (double v : delta_p_) {
    dp_sum += v;
    dp_sq += v * v;
    dp_4 += v * v * v * v;
  }
  const auto [kl_mean, kl_se] = mean_and_stderr(kl_sum, kl_sq, n);
  const auto [dp_mean, dp_mean_se] = mean_and_stderr(dp_sum, dp_sq, n);
  const auto [dp2_mean, dp2_se] = mean_and_stderr(dp_sq, dp_4, n);
  const double rms = std::sqrt(dp2_mean);
  const double agree = static_cast<double>(same_top_) / dn;
  // ln(PPL_model / PPL_base) is the mean of nll − nll_base; its standard error follows from
  // the two per-token series' variances and covariance.
  const auto [ln_ratio, ln_ratio_se] = mean_and_stderr(nll_ - nll_base_, nll2_ + nll_base2_ - 2 * nll_cross_, n);
  nlohmann::json j;
  j["predicted_tokens"] = n;
  j["kl_mean"] = kl_mean;
  j["kl_mean_stderr"] = kl_se;
  j["kl_median"] = percentile(kl_, 0.5);
  j["kl_p90"] = percentile(kl_, 0.9);
  j["kl_p99"] = percentile(kl_, 0.99);
  j["kl_max"] = *std::max_element(kl_.begin(), kl_.end());
  j["top1_agreement"] = agree;
  j["top1_agreement_stderr"] = n > 1 ? std::sqrt(agree * (1 - agree) / (dn - 1)) : 0.0;
  j["delta_p_mean"] = dp_mean;
  j["delta_p_mean_stderr"] = dp_mean_se;
  j["delta_p_rms"] = rms;
  j["delta_p_rms_stderr"] = rms > 0 ? 0.5 / rms * dp2_se : 0.0;
  j["delta_p_p01"] = percentile(delta_p_, 0.01);
  j["delta_p_p99"] = percentile(delta_p_, 0.99);
  j["perplexity"] = std::exp(nll_ / dn);
  j["base_perplexity"] = std::exp(nll_base_ / dn);
  j["perplexity_ratio"] = std::exp(ln_ratio);
  j["perplexity_ratio_stderr"] = std::exp(ln_ratio) * ln_ratio_se;
  return j;
}

}  // namespace llmc::eval
