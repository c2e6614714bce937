#include "llmc/model/generation.h"

#include <ATen/TensorOperators.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/multinomial.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/tensor.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

#include "kernels/kernels.h"
#include "llmc/core/error.h"
#include "llmc/core/progress.h"

namespace llmc::model {

namespace {

void validate(const GenerationOptions& o) {
  if (o.max_new_tokens < 0) throw UsageError("--max_new_tokens must be >= 0, found " + std::to_string(o.max_new_tokens));
  if (!(o.temperature > 0.0) || !std::isfinite(o.temperature)) {
    throw UsageError("--temperature must be a positive number, found " + std::to_string(o.temperature));
  }
  if (o.top_k < 0) throw UsageError("--top_k must be >= 0, found " + std::to_string(o.top_k));
  if (!(o.top_p > 0.0 && o.top_p <= 1.0)) throw UsageError("--top_p must be in (0, 1], found " + std::to_string(o.top_p));
}

// Next id from last-position logits [V] (float32, CPU).
int64_t pick(const at::Tensor& logits, const GenerationOptions& o, at::Generator& gen) {
  if (!o.do_sample) return argmax_id(logits);
  const auto support = sampling_support(logits, o);
  std::vector<double> p;
  p.reserve(support.size());
  for (const auto& s : support) p.push_back(s.second);
  at::Tensor probs = at::tensor(p, at::TensorOptions().dtype(c10::kDouble));
  return support[static_cast<size_t>(at::multinomial(probs, 1, false, gen).item<int64_t>())].first;
}

}  // namespace

int64_t argmax_id(const at::Tensor& logits) {
  const at::Tensor l = logits.to(c10::kCPU, c10::kFloat).contiguous();
  // The kernels' row maximum: the first index of the largest value, a NaN first.
  const auto& k = l.numel() < (int64_t{1} << 31) ? kernels::best_kernels() : kernels::scalar_kernels();
  float top;
  int64_t at = 0;
  k.row_max(l.data_ptr<float>(), l.numel(), &top, &at);
  return at;
}

std::vector<std::pair<int64_t, double>> sampling_support(const at::Tensor& logits, const GenerationOptions& o) {
  const at::Tensor l = logits.to(c10::kCPU, c10::kFloat).contiguous();
  const auto n = static_cast<int64_t>(l.numel());
  if (n == 0) throw UsageError("sampling: no logits");
  // NaN scores are never drawn (and would break the orderings below).
  std::vector<float> xs(l.data_ptr<float>(), l.data_ptr<float>() + n);
  for (float& v : xs) {
    if (std::isnan(v)) v = -std::numeric_limits<float>::infinity();
  }
  const float* x = xs.data();
  // Candidates: every id, or those at or above the k-th largest score.
  std::vector<int64_t> ids;
  if (o.top_k > 0 && o.top_k < n) {
    std::vector<float> v(x, x + n);
    std::nth_element(v.begin(), v.begin() + (o.top_k - 1), v.end(), std::greater<float>());
    const float kth = v[static_cast<size_t>(o.top_k - 1)];
    for (int64_t i = 0; i < n; ++i) {
      if (!(x[i] < kth)) ids.push_back(i);
    }
  } else {
    ids.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) ids[static_cast<size_t>(i)] = i;
  }
  // Most likely first (equal scores: lower id first), softmax of score / temperature.
  std::stable_sort(ids.begin(), ids.end(), [&](int64_t a, int64_t b) { return x[a] > x[b]; });
  const double top = static_cast<double>(x[ids[0]]) / o.temperature;
  std::vector<std::pair<int64_t, double>> out;
  out.reserve(ids.size());
  double sum = 0.0;
  for (int64_t i : ids) {
    const double e = std::exp(static_cast<double>(x[i]) / o.temperature - top);
    out.emplace_back(i, e);
    sum += e;
  }
  if (!(sum > 0.0) || !std::isfinite(sum)) throw Error("sampling: the model's logits are not finite numbers");
  for (auto& e : out) e.second /= sum;
  if (o.top_p < 1.0) {
    // TopPLogitsWarper on the ascending order: drop while the cumulative mass from the least
    // likely end stays <= 1 - top_p; the most likely id always stays.
    double cum = 0.0;
    size_t keep = out.size();
    while (keep > 1 && cum + out[keep - 1].second <= 1.0 - o.top_p) {
      cum += out[keep - 1].second;
      --keep;
    }
    out.resize(keep);
    double kept = 0.0;
    for (const auto& e : out) kept += e.second;
    for (auto& e : out) e.second /= kept;
  }
  return out;
}

std::vector<int64_t> generate(CausalLM& model, const std::vector<int64_t>& prompt, const GenerationOptions& options,
                              const RunContext& ctx) {
  validate(options);
  if (prompt.empty()) throw UsageError("generation needs a non-empty prompt");
  c10::InferenceMode guard;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(ctx.seed);
  const auto long_opts = at::TensorOptions().dtype(c10::kLong).device(model.device());
  const int64_t room = model.info().max_positions - static_cast<int64_t>(prompt.size());
  if (room <= 0) {
    throw UsageError("prompt of " + std::to_string(prompt.size()) + " tokens leaves no room below max_position_embeddings " +
                     std::to_string(model.info().max_positions));
  }
  const int64_t steps = std::min(options.max_new_tokens, room);
  KVCache cache;
  at::Tensor ids = at::tensor(prompt, long_opts).unsqueeze(0);
  std::vector<int64_t> out;
  Progress progress("generate", steps, options.progress && ctx.progress, "tok");
  for (int64_t step = 0; step < steps; ++step) {
    ctx.check_cancelled();
    const int64_t total = cache.length() + ids.size(1);
    at::Tensor mask = at::ones({1, total}, long_opts);
    at::Tensor logits = model.forward_last(ids, mask, &cache);
    at::Tensor last = logits.select(1, -1).squeeze(0).to(c10::kCPU, c10::kFloat);
    const int64_t next = pick(last, options, gen);
    out.push_back(next);
    progress.advance();
    if (options.eos_token_id && next == *options.eos_token_id) break;
    ids = at::tensor(std::vector<int64_t>{next}, long_opts).unsqueeze(0);
  }
  progress.finish();
  return out;
}

}  // namespace llmc::model
