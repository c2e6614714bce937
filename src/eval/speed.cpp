#include "llmc/eval/speed.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ops/full.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/randint.h>
#include <ATen/ops/tensor.h>
#include <c10/core/InferenceMode.h>

#include <chrono>

#include "llmc/core/error.h"
#include "llmc/core/progress.h"
#include "llmc/model/generation.h"

namespace llmc::eval {

namespace {

// Greedy decode of `steps` tokens after `prompt` with the KV cache; returns seconds spent
// in prefill and in decode.
std::pair<double, double> run_once(model::CausalLM& model, const at::Tensor& prompt, int64_t steps,
                                   const RunContext& ctx, Progress* progress) {
  using clock = std::chrono::steady_clock;
  const auto long_opts = at::TensorOptions().dtype(c10::kLong).device(model.device());
  model::KVCache cache;
  auto t0 = clock::now();
  at::Tensor logits = model.forward_last(prompt, at::ones({1, prompt.size(1)}, long_opts), &cache);
  int64_t next = model::argmax_id(logits.reshape({-1}));  // on the CPU: synchronizes
  auto t1 = clock::now();
  for (int64_t i = 0; i < steps; ++i) {
    ctx.check_cancelled();
    const at::Tensor ids = at::full({1, 1}, next, long_opts);
    logits = model.forward_last(ids, at::ones({1, cache.length() + 1}, long_opts), &cache);
    next = model::argmax_id(logits.reshape({-1}));
    if (progress != nullptr) progress->advance();
  }
  auto t2 = clock::now();
  return {std::chrono::duration<double>(t1 - t0).count(), std::chrono::duration<double>(t2 - t1).count()};
}

}  // namespace

void check_benchmark_sizes(const model::CausalLM& model, int64_t prompt_tokens, int64_t new_tokens) {
  if (prompt_tokens < 1 || new_tokens < 1) {
    throw UsageError("--bench_prompt_tokens and --bench_new_tokens must be >= 1");
  }
  if (prompt_tokens + new_tokens > model.info().max_positions) {
    throw UsageError("--bench_prompt_tokens + --bench_new_tokens (" + std::to_string(prompt_tokens + new_tokens) +
                     ") exceeds max_position_embeddings " + std::to_string(model.info().max_positions));
  }
}

SpeedResult benchmark_speed(model::CausalLM& model, const std::vector<int64_t>& source_ids, int64_t prompt_tokens,
                            int64_t new_tokens, const RunContext& ctx) {
  check_benchmark_sizes(model, prompt_tokens, new_tokens);
  c10::InferenceMode guard;
  std::vector<int64_t> ids(static_cast<size_t>(prompt_tokens));
  if (!source_ids.empty()) {
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = source_ids[i % source_ids.size()];
  } else {
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(ctx.seed);
    at::Tensor r = at::randint(model.info().vocab_size, {prompt_tokens}, gen, at::TensorOptions().dtype(c10::kLong));
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = r[static_cast<int64_t>(i)].item<int64_t>();
  }
  const at::Tensor prompt = at::tensor(ids, at::TensorOptions().dtype(c10::kLong)).unsqueeze(0).to(model.device());
  // Warm-up: a short prefill and a few decode steps.
  run_once(model, prompt.slice(1, 0, std::min<int64_t>(prompt_tokens, 16)), std::min<int64_t>(new_tokens, 4), ctx, nullptr);
  Progress progress("benchmark decode", new_tokens, ctx.progress, "tok");
  const auto [prefill_s, decode_s] = run_once(model, prompt, new_tokens, ctx, &progress);
  progress.finish();
  SpeedResult r;
  r.prompt_tokens = prompt_tokens;
  r.new_tokens = new_tokens;
  r.prefill_tokens_per_s = prefill_s > 0 ? static_cast<double>(prompt_tokens) / prefill_s : 0.0;
  r.decode_tokens_per_s = decode_s > 0 ? static_cast<double>(new_tokens) / decode_s : 0.0;
  return r;
}

}  // namespace llmc::eval
