#include "llmc/model/generation.h"

#include <ATen/TensorOperators.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/argmax.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/multinomial.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/softmax.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/topk.h>
#include <ATen/ops/zeros_like.h>
#include <c10/core/InferenceMode.h>

#include <cmath>
#include <limits>

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
  if (!o.do_sample) return at::argmax(logits).item<int64_t>();
  at::Tensor scores = logits / o.temperature;
  const double neg_inf = -std::numeric_limits<double>::infinity();
  if (o.top_k > 0 && o.top_k < scores.size(0)) {
    const double kth = std::get<0>(at::topk(scores, o.top_k)).min().item<double>();
    scores = scores.masked_fill(scores < kth, neg_inf);
  }
  if (o.top_p < 1.0) {
    // As transformers' TopPLogitsWarper: drop the lowest tokens whose cumulative probability
    // stays <= 1 - top_p, always keeping the most likely one.
    auto sorted = at::sort(scores, /*dim=*/0, /*descending=*/false);
    at::Tensor cum = at::cumsum(at::softmax(std::get<0>(sorted), 0), 0);
    at::Tensor remove_sorted = cum <= (1.0 - o.top_p);
    remove_sorted.narrow(0, remove_sorted.size(0) - 1, 1).fill_(false);
    at::Tensor remove = at::zeros_like(remove_sorted).scatter(0, std::get<1>(sorted), remove_sorted);
    scores = scores.masked_fill(remove, neg_inf);
  }
  at::Tensor probs = at::softmax(scores, 0);
  return at::multinomial(probs, 1, false, gen).item<int64_t>();
}

}  // namespace

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
