#include "llmc/eval/compare.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "../model/kernels/kernels.h"
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

// What one predicted position contributes.
struct RowResult {
  double kl;
  bool same_top;
  double logp_model;  // log P_model(correct token)
  double logp_base;   // log P_base(correct token)
};

// float64 rows (a float64 model or base): the kernels' row maximum and softmax sums as plain
// loops with std::exp.
void row_max_f64(const double* x, int64_t n, double* best, int64_t* at) {
  *best = -std::numeric_limits<double>::infinity();
  *at = 0;
  for (int64_t j = 0; j < n; ++j) {
    if (std::isnan(x[j])) {
      *best = x[j];
      *at = j;
      return;
    }
    if (x[j] > *best) {
      *best = x[j];
      *at = j;
    }
  }
}

void softmax_pair_f64(const double* xm, const double* xb, int64_t n, double max_m, double max_b, double* sums) {
  sums[0] = sums[1] = sums[2] = 0;
  for (int64_t j = 0; j < n; ++j) {
    const double eb = std::exp(xb[j] - max_b);
    sums[0] += eb;
    sums[1] += std::exp(xm[j] - max_m);
    if (eb > 0) sums[2] += eb * (xb[j] - xm[j]);
  }
}

// Rows [r0, r1): maxima and tops, then from the softmax sums (S_b = Σ e^(x_b − max_b), S_m
// likewise, C = Σ e^(x_b − max_b)·(x_b − x_m) over the ids the base gives mass)
// KL = C / S_b − (lse_b − lse_m). A broken row (NaN or +inf logits, or no mass at all) gets
// NaN figures, as the log-softmax would make them.
template <typename T, typename RowMax, typename SoftmaxPair>
void compare_rows(const T* xm, int64_t stride_m, const T* xb, int64_t stride_b, int64_t n, const int64_t* targets,
                  const int64_t* base_top, const double* base_target_logp, int64_t r0, int64_t r1, RowMax row_max,
                  SoftmaxPair softmax_pair, RowResult* out) {
  for (int64_t i = r0; i < r1; ++i) {
    const T* m = xm + i * stride_m;
    const T* b = xb + i * stride_b;
    T max_m, max_b;
    int64_t top_m, top_b;
    row_max(m, n, &max_m, &top_m);
    row_max(b, n, &max_b, &top_b);
    RowResult& r = out[i];
    r.same_top = top_m == (base_top ? base_top[i] : top_b);
    const bool given = base_target_logp != nullptr;
    if (!std::isfinite(static_cast<double>(max_m)) || !std::isfinite(static_cast<double>(max_b))) {
      r.kl = r.logp_model = std::nan("");
      r.logp_base = given ? base_target_logp[i] : r.kl;
      continue;
    }
    double sums[3];
    softmax_pair(m, b, n, max_m, max_b, sums);
    const double lse_b = static_cast<double>(max_b) + std::log(sums[0]);
    const double lse_m = static_cast<double>(max_m) + std::log(sums[1]);
    r.kl = sums[2] / sums[0] - (lse_b - lse_m);
    r.logp_model = static_cast<double>(m[targets[i]]) - lse_m;
    r.logp_base = given ? base_target_logp[i] : static_cast<double>(b[targets[i]]) - lse_b;
  }
}

// Rows of `x` ([N, >= shared]) as `dt` on the CPU with unit stride along the vocabulary (a view
// when they already are).
at::Tensor as_rows(const at::Tensor& x, int64_t shared, c10::ScalarType dt) {
  at::Tensor r = x.slice(1, 0, shared).to(c10::kCPU, dt);
  return r.stride(1) == 1 ? r : r.contiguous();
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
  const at::Tensor xm = as_rows(model_logits, shared, dt);
  const at::Tensor xb = as_rows(base.logits, shared, dt);
  const at::Tensor tgt = targets.to(c10::kCPU, c10::kLong).reshape({n}).contiguous();
  at::Tensor top, tlogp;
  if (base.argmax.defined()) top = base.argmax.to(c10::kCPU, c10::kLong).reshape({n}).contiguous();
  if (base.target_logp.defined()) tlogp = base.target_logp.to(c10::kCPU, c10::kDouble).reshape({n}).contiguous();
  const int64_t* tp = tgt.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    if (tp[i] < 0 || tp[i] >= shared) throw Error("compare: a target id is outside the shared vocabulary");
  }
  const int64_t* topp = top.defined() ? top.data_ptr<int64_t>() : nullptr;
  const double* tlp = tlogp.defined() ? tlogp.data_ptr<double>() : nullptr;
  std::vector<RowResult> rows(static_cast<size_t>(n));
  // float32 rows on the CPU's kernels (model/kernels: AVX-512 or the scalar reference).
  const model::kernels::KernelSet& k = model::kernels::best_kernels();
  at::parallel_for(0, n, 1, [&](int64_t a, int64_t b) {
    if (dt == c10::kDouble) {
      compare_rows(xm.data_ptr<double>(), xm.stride(0), xb.data_ptr<double>(), xb.stride(0), shared, tp, topp, tlp, a, b,
                   row_max_f64, softmax_pair_f64, rows.data());
    } else {
      compare_rows(xm.data_ptr<float>(), xm.stride(0), xb.data_ptr<float>(), xb.stride(0), shared, tp, topp, tlp, a, b,
                   k.row_max, k.softmax_pair, rows.data());
    }
  });
  for (const RowResult& r : rows) {
    kl_.push_back(r.kl);
    same_top_ += r.same_top ? 1 : 0;
    delta_p_.push_back(std::exp(r.logp_model) - std::exp(r.logp_base));
    nll_ -= r.logp_model;
    nll2_ += r.logp_model * r.logp_model;
    nll_base_ -= r.logp_base;
    nll_base2_ += r.logp_base * r.logp_base;
    nll_cross_ += r.logp_model * r.logp_base;
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
