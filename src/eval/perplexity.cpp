#include "llmc/eval/perplexity.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/log_softmax.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>
#include <c10/core/InferenceMode.h>

#include <cmath>

#include "llmc/core/error.h"
#include "llmc/core/progress.h"

namespace llmc::eval {

void for_each_window_batch(const std::vector<int64_t>& ids, int64_t max_length, int64_t batch_size, c10::Device device,
                           const std::string& label, const RunContext& ctx,
                           const std::function<void(const at::Tensor& ids, const at::Tensor& mask)>& fn) {
  const int64_t n = static_cast<int64_t>(ids.size());
  std::vector<std::pair<int64_t, int64_t>> windows;  // [begin, end)
  for (int64_t b = 0; b < n; b += max_length) windows.emplace_back(b, std::min(n, b + max_length));
  const auto long_cpu = at::TensorOptions().dtype(c10::kLong);
  Progress progress(label, static_cast<int64_t>(windows.size()), ctx.progress, "win");
  for (size_t w0 = 0; w0 < windows.size(); w0 += static_cast<size_t>(batch_size)) {
    ctx.check_cancelled();
    const size_t w1 = std::min(windows.size(), w0 + static_cast<size_t>(batch_size));
    const int64_t B = static_cast<int64_t>(w1 - w0);
    int64_t T = 0;
    for (size_t w = w0; w < w1; ++w) T = std::max(T, windows[w].second - windows[w].first);
    at::Tensor batch = at::zeros({B, T}, long_cpu);
    at::Tensor mask = at::zeros({B, T}, long_cpu);
    auto* bp = batch.data_ptr<int64_t>();
    auto* mp = mask.data_ptr<int64_t>();
    for (size_t w = w0; w < w1; ++w) {
      const int64_t row = static_cast<int64_t>(w - w0);
      for (int64_t t = 0; t < windows[w].second - windows[w].first; ++t) {
        bp[row * T + t] = ids[static_cast<size_t>(windows[w].first + t)];
        mp[row * T + t] = 1;
      }
    }
    fn(batch.to(device), mask.to(device));
    progress.advance(B);
  }
  progress.finish();
}

PerplexityResult perplexity(model::CausalLM& model, const std::vector<int64_t>& ids, int64_t max_length,
                            int64_t batch_size, const RunContext& ctx, const WindowObserver& observe) {
  const int64_t max_pos = model.info().max_positions;
  if (max_length == 0) max_length = max_pos;
  if (max_length < 2 || max_length > max_pos) {
    throw UsageError("--max_length must be between 2 and max_position_embeddings (" + std::to_string(max_pos) +
                     "), found " + std::to_string(max_length));
  }
  if (batch_size < 1) throw UsageError("--batch_size must be >= 1, found " + std::to_string(batch_size));
  const int64_t n = static_cast<int64_t>(ids.size());
  if (n < 2) throw InputError("the evaluation text has " + std::to_string(n) + " token(s); perplexity needs at least 2");
  for (int64_t id : ids) {
    if (id < 0 || id >= model.info().vocab_size) {
      throw InputError("token id " + std::to_string(id) + " is outside the model's vocabulary of " +
                       std::to_string(model.info().vocab_size) + " (tokenizer and model do not match)");
    }
  }

  c10::InferenceMode guard;
  PerplexityResult result;
  for_each_window_batch(ids, max_length, batch_size, model.device(), "perplexity", ctx,
                        [&](const at::Tensor& batch, const at::Tensor& mask) {
                          const int64_t T = batch.size(1);
                          result.windows += batch.size(0);
                          if (T < 2) return;
                          at::Tensor logits = model.forward(batch, mask, nullptr);
                          at::Tensor logp = at::log_softmax(logits.slice(1, 0, T - 1).to(c10::kFloat), -1);
                          at::Tensor tok_logp = logp.gather(2, batch.slice(1, 1, T).unsqueeze(2)).squeeze(2).to(c10::kCPU, c10::kDouble);
                          at::Tensor valid = mask.slice(1, 1, T).to(c10::kCPU, c10::kDouble);
                          result.total_nll -= (tok_logp * valid).sum().item<double>();
                          result.predicted_tokens += static_cast<int64_t>(valid.sum().item<double>());
                          if (observe) observe(logits, batch, mask);
                        });
  if (result.predicted_tokens == 0) throw InputError("no token to predict with --max_length " + std::to_string(max_length));
  result.perplexity = std::exp(result.total_nll / static_cast<double>(result.predicted_tokens));
  return result;
}

}  // namespace llmc::eval
