#include <ATen/TensorOperators.h>
#include <ATen/ops/abs.h>
#include <ATen/ops/argmax.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <ATen/ops/softmax.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/topk.h>
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>

#include "llmc/core/error.h"
#include "llmc/io/safetensors.h"
#include "llmc/model/causal_lm.h"
#include "llmc/model/generation.h"
#include "llmc/model/opt_config.h"
#include "llmc/model/packed_weight.h"
#include "test_util.h"

using namespace llmc;
using llmc::test::fixture;

namespace {

// Golden logits come from scripts/opt_reference.py (plain torch, written from docs/formats.md).
constexpr double kTol = 1e-4;  // absolute, float32 on tiny models (the issue's bound)

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return at::abs(a.to(c10::kFloat) - b.to(c10::kFloat)).max().item<double>();
}

struct Case {
  const char* model;
  const char* golden;
};

class OptLogits : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    ctx_ = test::cpu_context();
    model_ = model::load_causal_lm(fixture(GetParam().model), ctx_);
    golden_ = std::make_unique<io::SafetensorsFile>(io::SafetensorsFile::open(fixture(GetParam().golden)));
  }
  RunContext ctx_;
  std::unique_ptr<model::CausalLM> model_;
  std::unique_ptr<io::SafetensorsFile> golden_;
};

TEST_P(OptLogits, UnbatchedMatchesReference) {
  c10::InferenceMode guard;
  at::Tensor ids = golden_->tensor("single_ids");
  at::Tensor logits = model_->forward(ids, at::ones_like(ids), nullptr);
  EXPECT_LT(max_abs_diff(logits, golden_->tensor("single_logits")), kTol);
}

TEST_P(OptLogits, BatchedWithPaddingMatchesReference) {
  c10::InferenceMode guard;
  at::Tensor ids = golden_->tensor("batch_ids");
  at::Tensor mask = golden_->tensor("batch_mask");
  at::Tensor logits = model_->forward(ids, mask, nullptr);
  at::Tensor want = golden_->tensor("batch_logits");
  // Compare the real (unpadded) positions.
  at::Tensor real = mask.to(c10::kBool).unsqueeze(-1).expand_as(want);
  EXPECT_LT(max_abs_diff(logits.masked_select(real), want.masked_select(real)), kTol);
}

TEST_P(OptLogits, KvCacheIncrementalMatchesReference) {
  c10::InferenceMode guard;
  at::Tensor ids = golden_->tensor("single_ids");
  model::KVCache cache;
  std::vector<at::Tensor> steps;
  // A 5-token prefill, then one token at a time.
  steps.push_back(model_->forward(ids.slice(1, 0, 5), at::ones({1, 5}, c10::kLong), &cache));
  for (int64_t t = 5; t < ids.size(1); ++t) {
    steps.push_back(model_->forward(ids.slice(1, t, t + 1), at::ones({1, t + 1}, c10::kLong), &cache));
  }
  EXPECT_EQ(cache.length(), ids.size(1));
  EXPECT_LT(max_abs_diff(at::cat(steps, 1), golden_->tensor("single_logits")), kTol);
}

TEST_P(OptLogits, KvCacheBatchedWithPaddingMatchesReference) {
  c10::InferenceMode guard;
  at::Tensor ids = golden_->tensor("batch_ids");
  at::Tensor mask = golden_->tensor("batch_mask");
  at::Tensor want = golden_->tensor("batch_logits");
  model::KVCache cache;
  std::vector<at::Tensor> steps;
  steps.push_back(model_->forward(ids.slice(1, 0, 4), mask.slice(1, 0, 4), &cache));
  for (int64_t t = 4; t < ids.size(1); ++t) {
    steps.push_back(model_->forward(ids.slice(1, t, t + 1), mask.slice(1, 0, t + 1), &cache));
  }
  at::Tensor got = at::cat(steps, 1);
  at::Tensor real = mask.to(c10::kBool).unsqueeze(-1).expand_as(want);
  EXPECT_LT(max_abs_diff(got.masked_select(real), want.masked_select(real)), kTol);
}

TEST_P(OptLogits, LastPositionOnlyEqualsTheFullForward) {
  c10::InferenceMode guard;
  at::Tensor ids = golden_->tensor("batch_ids");
  at::Tensor mask = golden_->tensor("batch_mask");
  at::Tensor full = model_->forward(ids, mask, nullptr);
  at::Tensor last = model_->forward_last(ids, mask, nullptr);
  ASSERT_EQ(last.size(1), 1);
  // The lm_head product of two rows runs in the matrix-vector kernel, of all rows in BLAS:
  // float32 sums in another order.
  EXPECT_LT(max_abs_diff(last, full.narrow(1, ids.size(1) - 1, 1)), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(
    Fixtures, OptLogits,
    ::testing::Values(Case{"opt_preln_f32", "golden_opt_preln_f32.safetensors"},
                      Case{"opt_preln_bin", "golden_opt_preln_f32.safetensors"},
                      Case{"opt_preln_bf16_sharded", "golden_opt_preln_bf16_sharded.safetensors"},
                      Case{"opt_postln_f16_bin", "golden_opt_postln_f16_bin.safetensors"},
                      Case{"opt_postln_bin_sharded", "golden_opt_postln_f16_bin.safetensors"}),
    [](const auto& info) { return std::string(info.param.model); });

TEST(OptModel, ParametersCarryHuggingFaceNames) {
  auto ctx = test::cpu_context();
  auto m = model::load_causal_lm(fixture("opt_postln_f16_bin"), ctx);
  std::set<std::string> names;
  for (const auto& [k, v] : m->named_parameters()) names.insert(k);
  for (const char* k : {"model.decoder.embed_tokens.weight", "model.decoder.embed_positions.weight",
                        "model.decoder.project_in.weight", "model.decoder.project_out.weight",
                        "model.decoder.layers.1.self_attn.q_proj.bias", "model.decoder.layers.0.fc2.weight",
                        "lm_head.weight"}) {
    EXPECT_TRUE(names.count(k)) << k;
  }
  EXPECT_FALSE(names.count("model.decoder.final_layer_norm.weight"));  // post-LN: none
  for (const auto& [k, v] : m->named_parameters()) EXPECT_EQ(v.scalar_type(), c10::kFloat) << k;  // f16 upcast
}

TEST(OptModel, Bfloat16ComputeStaysClose) {
  auto ctx = test::cpu_context(c10::kBFloat16);
  auto m = model::load_causal_lm(fixture("opt_preln_f32"), ctx);
  auto golden = io::SafetensorsFile::open(fixture("golden_opt_preln_f32.safetensors"));
  c10::InferenceMode guard;
  at::Tensor ids = golden.tensor("single_ids");
  at::Tensor logits = m->forward(ids, at::ones_like(ids), nullptr);
  EXPECT_EQ(logits.scalar_type(), c10::kBFloat16);
  at::Tensor want = golden.tensor("single_logits");
  // bf16 has 8 bits of mantissa: compare relative to the logit scale, loosely.
  EXPECT_LT(max_abs_diff(logits, want) / want.abs().max().item<double>(), 0.1);
}

TEST(OptModel, TiesLmHeadToTheEmbeddingLikeTransformers) {
  auto ctx = test::cpu_context();
  for (const char* dir : {"opt_preln_bin", "opt_preln_bf16_sharded", "opt_preln_f32"}) {
    auto m = model::load_causal_lm(fixture(dir), ctx);
    std::map<std::string, at::Tensor> p;
    for (const auto& [k, v] : m->named_parameters()) p[k] = v;
    EXPECT_EQ(p.at("lm_head.weight").data_ptr(), p.at("model.decoder.embed_tokens.weight").data_ptr()) << dir;
  }
}

TEST(OptModel, RefusesNonFloatWeights) {
  test::TempDir tmp;
  for (const auto& entry : std::filesystem::directory_iterator(fixture("opt_preln_f32"))) {
    std::filesystem::copy(entry.path(), tmp / entry.path().filename().string());
  }
  auto sd = io::SafetensorsFile::open(fixture("opt_preln_f32/model.safetensors")).load_all();
  sd["model.decoder.layers.0.fc1.bias"] = sd["model.decoder.layers.0.fc1.bias"].to(c10::kInt);
  io::save_safetensors(tmp / "model.safetensors", sd);
  auto ctx = test::cpu_context();
  test::expect_error<InputError>([&] { model::load_causal_lm(tmp.path(), ctx); },
                                 "tensor 'model.decoder.layers.0.fc1.bias' has dtype Int, expected float32, float16 or bfloat16");
}

TEST(OptConfig, ReadsEveryFieldAndDefaults) {
  const auto j = nlohmann::json::parse(R"({"vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1, "ffn_dim": 16,
      "max_position_embeddings": 4, "num_attention_heads": 2, "do_layer_norm_before": false,
      "word_embed_proj_dim": 4, "dtype": "bfloat16", "enable_bias": false,
      "layer_norm_elementwise_affine": false, "_remove_final_layer_norm": true})");
  const auto c = model::OptConfig::from_json(j, "config.json");
  EXPECT_FALSE(c.do_layer_norm_before);
  EXPECT_TRUE(c.has_projections());
  EXPECT_FALSE(c.has_final_layer_norm());
  EXPECT_FALSE(c.enable_bias);
  EXPECT_FALSE(c.layer_norm_elementwise_affine);
  EXPECT_EQ(c.torch_dtype, "bfloat16");
  EXPECT_EQ(c.activation_function, "relu");
  EXPECT_EQ(c.head_dim(), 4);
  auto bad = j;
  bad.erase("ffn_dim");
  test::expect_error<InputError>([&] { model::OptConfig::from_json(bad, "config.json"); }, "missing required field 'ffn_dim'");
  bad = j;
  bad["num_attention_heads"] = 3;
  test::expect_error<InputError>([&] { model::OptConfig::from_json(bad, "config.json"); }, "not divisible");
  bad = j;
  bad["activation_function"] = "mish";
  test::expect_error<InputError>([&] { model::OptConfig::from_json(bad, "config.json"); }, "unsupported activation_function");
}

struct BadModel {
  const char* dir;
  const char* needle;
};

class BadModels : public ::testing::TestWithParam<BadModel> {};

TEST_P(BadModels, AreInputErrorsNamingTheProblem) {
  auto ctx = test::cpu_context();
  test::expect_error<InputError>([&] { model::load_causal_lm(fixture(std::string("bad/") + GetParam().dir), ctx); },
                                 GetParam().needle);
}

INSTANTIATE_TEST_SUITE_P(
    Fixtures, BadModels,
    ::testing::Values(BadModel{"no_config", "config.json not found"}, BadModel{"config_not_json", "not valid JSON"},
                      BadModel{"config_missing_field", "missing required field 'hidden_size'"},
                      BadModel{"bad_model_type", "unsupported model_type 'llama_x' (supported: opt)"},
                      BadModel{"missing_tensor", "missing tensor 'model.decoder.layers.1.fc2.weight'"},
                      BadModel{"wrong_shape", "tensor 'model.decoder.layers.0.fc1.weight' has shape [48, 32], expected [64, 32]"},
                      BadModel{"bin_forbidden_global", "forbidden global"},
                      BadModel{"st_truncated", "truncated"}),
    [](const auto& info) { return std::string(info.param.dir); });

// ---------------------------------------------------------------- the CPU decode path

// Logits of a 4-token prefill then one token at a time (cache continued), with the decode path
// on or off (LLMC_FAST_DECODE=0: the modules for every step).
std::vector<at::Tensor> decode_logits(model::CausalLM& m, const at::Tensor& ids, bool fast, model::KVCache& cache) {
  if (fast) unsetenv("LLMC_FAST_DECODE");
  else setenv("LLMC_FAST_DECODE", "0", 1);
  c10::InferenceMode guard;
  std::vector<at::Tensor> out;
  out.push_back(m.forward(ids.slice(1, 0, 4), at::ones({1, 4}, c10::kLong), &cache));
  for (int64_t t = 4; t < ids.size(1); ++t) {
    out.push_back(m.forward(ids.slice(1, t, t + 1), at::ones({1, t + 1}, c10::kLong), &cache));
  }
  unsetenv("LLMC_FAST_DECODE");
  return out;
}

struct WeightFormat {
  std::string name;
  std::function<std::unique_ptr<model::PackedWeight>(const at::Tensor&)> pack;  // null: dense
  bool has_fast_path;
};

model::Bnb4Options bnb4(const std::string& type, bool dq, int64_t bs) {
  model::Bnb4Options o;
  o.quant_type = type;
  o.double_quant = dq;
  o.blocksize = bs;
  return o;
}

// The decode path against the modules' path, for every weight format llmc writes and both
// layer orders (pre-LN, and post-LN with project_in/out), within 1e-4 of each other; and
// it is the path actually taken (the cache's in-place storage exists) except where a format
// has no one-row product.
TEST(FastDecode, EveryWeightFormatMatchesTheModulesPath) {
  std::vector<WeightFormat> formats = {
      {"float32", nullptr, true},
      {"nf4", [](const at::Tensor& w) { return model::quantize_bnb4(w, bnb4("nf4", true, 32)); }, true},
      {"fp4", [](const at::Tensor& w) { return model::quantize_bnb4(w, bnb4("fp4", false, 32)); }, true},
      {"nf4 blocks across rows", [](const at::Tensor& w) { return model::quantize_bnb4(w, bnb4("nf4", false, 64)); }, false},
      {"int8", [](const at::Tensor& w) { return model::quantize_int8(w); }, true},
      {"awq", [](const at::Tensor& w) { return model::quantize_awq_rtn(w, 32); }, true},
  };
  for (int64_t bits : {2, 3, 4, 8}) {
    formats.push_back({"gptq" + std::to_string(bits),
                       [bits](const at::Tensor& w) { return model::quantize_rtn_gptq(w, {bits, 32, bits != 3}); }, true});
  }
  const at::Tensor ids = at::tensor(std::vector<int64_t>{2, 464, 2068, 7586, 21831, 625, 262, 16931, 3290, 13, 383, 11},
                                    c10::kLong)
                             .unsqueeze(0);
  for (const char* fixture_name : {"opt_preln_f32", "opt_postln_f16_bin"}) {
    for (const auto& f : formats) {
      SCOPED_TRACE(std::string(fixture_name) + " " + f.name);
      auto ctx = test::cpu_context();
      auto m = model::load_causal_lm(fixture(fixture_name), ctx);
      if (f.pack) {
        for (int64_t i = 0; i < m->info().num_layers; ++i) {
          for (const auto& l : m->layer_layout(i).linears) m->install_linear(l.name, at::Tensor(), f.pack(m->linear_weight(l.name)));
        }
      }
      model::KVCache slow_cache, fast_cache;
      const auto slow = decode_logits(*m, ids, false, slow_cache);
      const auto fast = decode_logits(*m, ids, true, fast_cache);
      EXPECT_TRUE(slow_cache.key_store.empty());
      EXPECT_EQ(!fast_cache.key_store.empty() && fast_cache.key_store[0].defined(), f.has_fast_path);
      EXPECT_EQ(fast_cache.length(), ids.size(1));
      EXPECT_LT(max_abs_diff(at::cat(fast, 1), at::cat(slow, 1)), kTol);
      // The modules continue a cache the decode path wrote (two tokens at once), and the
      // decode path one the modules wrote.
      c10::InferenceMode guard;
      const at::Tensor more = at::tensor(std::vector<int64_t>{50, 51}, c10::kLong).unsqueeze(0);
      const int64_t n = ids.size(1);
      at::Tensor a = m->forward(more, at::ones({1, n + 2}, c10::kLong), &fast_cache);
      at::Tensor b = m->forward(more, at::ones({1, n + 2}, c10::kLong), &slow_cache);
      EXPECT_LT(max_abs_diff(a, b), kTol);
      at::Tensor one = more.slice(1, 0, 1);
      EXPECT_LT(max_abs_diff(m->forward(one, at::ones({1, n + 3}, c10::kLong), &fast_cache),
                             m->forward(one, at::ones({1, n + 3}, c10::kLong), &slow_cache)),
                kTol);
    }
  }
}

// From an empty cache (the first token decoded alone), with 16-bit dense weights kept 16-bit
// (quantize's and evaluate's base models), and for a cache grown past its first capacity.
TEST(FastDecode, EmptyCacheHalfWeightsAndGrowth) {
  for (bool keep16 : {false, true}) {
    auto ctx = test::cpu_context();
    ctx.keep_16bit_weights = keep16;
    auto m = model::load_causal_lm(fixture("opt_postln_f16_bin"), ctx);
    c10::InferenceMode guard;
    const int64_t n = m->info().max_positions;  // 64: past the first capacity of 64 after doubling
    std::vector<int64_t> seq;
    for (int64_t t = 0; t < n; ++t) seq.push_back((t * 7919) % 50000);
    const at::Tensor ids = at::tensor(seq, c10::kLong).unsqueeze(0);
    const at::Tensor want = m->forward(ids, at::ones_like(ids), nullptr);
    model::KVCache cache;
    std::vector<at::Tensor> steps;
    for (int64_t t = 0; t < n; ++t) steps.push_back(m->forward(ids.slice(1, t, t + 1), at::ones({1, t + 1}, c10::kLong), &cache));
    ASSERT_FALSE(cache.key_store.empty());
    EXPECT_LT(max_abs_diff(at::cat(steps, 1), want), kTol) << "keep16 " << keep16;
  }
}

// transformers' TemperatureLogitsWarper, TopKLogitsWarper and TopPLogitsWarper on the whole
// vocabulary, then softmax: the probabilities sampling_support must give (it sorts only the
// top-k candidates).
at::Tensor reference_sampling_probs(const at::Tensor& logits, const model::GenerationOptions& o) {
  at::Tensor scores = logits.to(c10::kDouble) / o.temperature;
  const double neg_inf = -std::numeric_limits<double>::infinity();
  if (o.top_k > 0 && o.top_k < scores.size(0)) {
    const double kth = std::get<0>(at::topk(scores, o.top_k)).min().item<double>();
    scores = scores.masked_fill(scores < kth, neg_inf);
  }
  if (o.top_p < 1.0) {
    auto sorted = at::sort(scores, 0, false);
    at::Tensor cum = at::cumsum(at::softmax(std::get<0>(sorted), 0), 0);
    at::Tensor remove_sorted = cum <= (1.0 - o.top_p);
    remove_sorted.narrow(0, remove_sorted.size(0) - 1, 1).fill_(false);
    at::Tensor remove = at::zeros_like(remove_sorted).scatter(0, std::get<1>(sorted), remove_sorted);
    scores = scores.masked_fill(remove, neg_inf);
  }
  return at::softmax(scores, 0);
}

TEST(Generation, SamplingSupportEqualsTheWarpersOverTheWholeVocabulary) {
  at::manual_seed(3);
  for (int trial = 0; trial < 4; ++trial) {
    at::Tensor logits = at::randn({3000}) * (1.0 + trial);
    logits[7] = logits[11].item<float>();  // a tie
    for (int64_t k : {int64_t{0}, int64_t{1}, int64_t{50}, int64_t{2999}}) {
      for (double p : {1.0, 0.9, 0.3}) {
        for (double t : {0.7, 1.0, 1.5}) {
          model::GenerationOptions o;
          o.top_k = k;
          o.top_p = p;
          o.temperature = t;
          SCOPED_TRACE("top_k " + std::to_string(k) + " top_p " + std::to_string(p) + " T " + std::to_string(t));
          const at::Tensor want = reference_sampling_probs(logits, o);
          at::Tensor got = at::zeros({3000}, at::TensorOptions().dtype(c10::kDouble));
          const auto support = model::sampling_support(logits, o);
          for (size_t i = 1; i < support.size(); ++i) ASSERT_GE(support[i - 1].second, support[i].second);
          for (const auto& [id, prob] : support) got[id] = prob;
          EXPECT_EQ((got > 0).sum().item<int64_t>(), (want > 0).sum().item<int64_t>());
          EXPECT_LT(max_abs_diff(got, want), 1e-9);
        }
      }
    }
  }
}

TEST(Generation, GreedyEqualsArgmaxOfFullForward) {
  auto ctx = test::cpu_context();
  auto m = model::load_causal_lm(fixture("opt_preln_f32"), ctx);
  const std::vector<int64_t> prompt = {464, 2068, 7586, 21831};
  model::GenerationOptions o;
  o.max_new_tokens = 6;
  const auto out = model::generate(*m, prompt, o, ctx);
  ASSERT_EQ(out.size(), 6u);
  // Recompute each step without the cache.
  c10::InferenceMode guard;
  std::vector<int64_t> seq = prompt;
  for (int64_t next : out) {
    at::Tensor ids = at::tensor(seq, c10::kLong).unsqueeze(0);
    at::Tensor logits = m->forward(ids, at::ones_like(ids), nullptr);
    EXPECT_EQ(at::argmax(logits[0][-1]).item<int64_t>(), next);
    seq.push_back(next);
  }
}

TEST(Generation, StopsAtEosAndSamplesReproducibly) {
  auto ctx = test::cpu_context();
  auto m = model::load_causal_lm(fixture("opt_preln_f32"), ctx);
  const std::vector<int64_t> prompt = {464, 2068};
  model::GenerationOptions greedy;
  greedy.max_new_tokens = 5;
  const auto first = model::generate(*m, prompt, greedy, ctx);
  greedy.eos_token_id = first[1];
  EXPECT_EQ(model::generate(*m, prompt, greedy, ctx).size(), 2u);

  model::GenerationOptions s;
  s.do_sample = true;
  s.max_new_tokens = 10;
  s.temperature = 1.5;
  s.top_k = 20;
  s.top_p = 0.9;
  ctx.seed = 123;
  const auto a = model::generate(*m, prompt, s, ctx);
  const auto b = model::generate(*m, prompt, s, ctx);
  EXPECT_EQ(a, b);
  ctx.seed = 124;
  EXPECT_NE(model::generate(*m, prompt, s, ctx), a);
  s.top_k = 1;  // top-1 sampling is greedy
  greedy.eos_token_id.reset();
  greedy.max_new_tokens = 10;
  EXPECT_EQ(model::generate(*m, prompt, s, ctx), model::generate(*m, prompt, greedy, ctx));
  s.temperature = 0;
  EXPECT_THROW(model::generate(*m, prompt, s, ctx), UsageError);
}
}  // namespace
