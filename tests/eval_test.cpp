#include <ATen/ops/ones.h>
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "llmc/core/error.h"
#include "llmc/eval/evaluate.h"
#include "llmc/model/weight_count.h"
#include "llmc/eval/perplexity.h"
#include "llmc/eval/speed.h"
#include "llmc/io/safetensors.h"
#include "llmc/model/causal_lm.h"
#include "test_util.h"

using namespace llmc;
using llmc::test::fixture;

namespace {
std::vector<int64_t> golden_ids(const io::SafetensorsFile& g) {
  at::Tensor t = g.tensor("ppl_ids");
  return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
}
}  // namespace

// 150 ids in windows of 64 (64 + 64 + 22): perplexity and count equal the Python
// reference's (scripts/opt_reference.py perplexity) within 1e-4 relative.
TEST(Perplexity, MatchesReferenceProtocol) {
  auto ctx = test::cpu_context();
  for (const char* name : {"opt_preln_f32", "opt_postln_f16_bin"}) {
    auto m = model::load_causal_lm(fixture(name), ctx);
    auto g = io::SafetensorsFile::open(fixture(std::string("golden_") + (std::string(name) == "opt_preln_f32" ? "opt_preln_f32" : "opt_postln_f16_bin") + ".safetensors"));
    const double want = g.tensor("ppl_value").item<double>();
    const int64_t count = g.tensor("ppl_count").item<int64_t>();
    EXPECT_EQ(count, 150 - 3);
    for (int64_t batch : {1, 2, 3}) {
      const auto r = eval::perplexity(*m, golden_ids(g), 64, batch, ctx);
      EXPECT_EQ(r.predicted_tokens, count) << name;
      EXPECT_EQ(r.windows, 3);
      EXPECT_NEAR(r.perplexity / want, 1.0, 1e-4) << name << " batch " << batch;
    }
  }
}

TEST(Perplexity, RefusesBadArguments) {
  auto ctx = test::cpu_context();
  auto m = model::load_causal_lm(fixture("opt_preln_f32"), ctx);
  EXPECT_THROW(eval::perplexity(*m, {1, 2, 3}, 65, 1, ctx), UsageError);  // > max_position_embeddings
  EXPECT_THROW(eval::perplexity(*m, {1, 2, 3}, 8, 0, ctx), UsageError);
  EXPECT_THROW(eval::perplexity(*m, {1}, 8, 1, ctx), InputError);
  EXPECT_THROW(eval::perplexity(*m, {1, 999999}, 8, 1, ctx), InputError);
}

TEST(WeightCount, CountsTiedWeightsOnceAndMeasuresSparsity) {
  auto ctx = test::cpu_context();
  auto m = model::load_causal_lm(fixture("opt_preln_f32"), ctx);
  const auto s = model::count_weights(*m);
  // V*E + (P+2)*H + final LN 2H + per layer: 4(H*H+H) + 2*2H + (F*H+F) + (H*F+H)
  const int64_t V = 50272, H = 32, F = 64, P = 64, L = 2;
  const int64_t expected = V * H + (P + 2) * H + 2 * H + L * (4 * (H * H + H) + 4 * H + (F * H + F) + (H * F + H));
  EXPECT_EQ(s.num_parameters, expected);
  EXPECT_EQ(s.memory_footprint_bytes, expected * 4);
  EXPECT_EQ(s.sparsity(), 0.0);
  // Zero half of one fc1 weight: sparsity is measured over the decoder linears only.
  for (auto& [name, t] : m->named_parameters()) {
    if (name == "model.decoder.layers.0.fc1.weight") t.narrow(0, 0, F / 2).zero_();
  }
  const int64_t linear_total = L * (4 * H * H + 2 * F * H);
  const auto after = model::count_weights(*m);
  EXPECT_DOUBLE_EQ(after.sparsity(), static_cast<double>(F / 2 * H) / linear_total);
  EXPECT_EQ(after.num_parameters, expected);
  EXPECT_EQ(s.nonzero_parameters - after.nonzero_parameters, F / 2 * H);
}

TEST(Speed, ReportsPositiveRates) {
  auto ctx = test::cpu_context();
  auto m = model::load_causal_lm(fixture("opt_preln_f32"), ctx);
  const auto r = eval::benchmark_speed(*m, {}, 16, 8, ctx);
  EXPECT_GT(r.prefill_tokens_per_s, 0.0);
  EXPECT_GT(r.decode_tokens_per_s, 0.0);
  EXPECT_THROW(eval::benchmark_speed(*m, {}, 60, 10, ctx), UsageError);
}

TEST(Evaluate, ReportsTheDocumentedKeys) {
  auto ctx = test::cpu_context();
  eval::EvaluateOptions o;
  o.model_name_or_path = fixture("opt_preln_f32");
  o.eval_file = fixture("eval.txt");
  o.prompt = "The quick brown";
  o.generation.max_new_tokens = 4;
  o.benchmark = true;
  o.bench_prompt_tokens = 16;
  o.bench_new_tokens = 4;
  const nlohmann::json m = eval::run_evaluate(o, ctx);
  for (const char* k : {"perplexity", "predicted_tokens", "num_parameters", "disk_size_bytes", "memory_footprint_bytes",
                        "sparsity", "prefill_tokens_per_s", "decode_tokens_per_s", "generated_text"}) {
    EXPECT_TRUE(m.contains(k)) << k;
  }
  EXPECT_TRUE(std::isfinite(m["perplexity"].get<double>()));
  EXPECT_GT(m["disk_size_bytes"].get<int64_t>(), 6'000'000);
  // A figure that was not asked for is left out.
  o.benchmark = false;
  o.prompt.clear();
  const nlohmann::json m2 = eval::run_evaluate(o, ctx);
  EXPECT_FALSE(m2.contains("decode_tokens_per_s"));
  EXPECT_FALSE(m2.contains("generated_text"));
}

TEST(Evaluate, RefusesEmptyAndNonUtf8EvalFiles) {
  test::expect_error<InputError>([] { eval::read_eval_text(fixture("bad/empty.txt")); }, "eval file is empty");
  test::expect_error<InputError>([] { eval::read_eval_text(fixture("bad/latin1.txt")); }, "not valid UTF-8");
  test::expect_error<InputError>([] { eval::read_eval_text(fixture("bad/nope.txt")); }, "file not found");
}
