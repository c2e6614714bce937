#include <ATen/TensorOperators.h>
#include <ATen/ops/abs.h>
#include <ATen/ops/allclose.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/full.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/tensor.h>
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "llmc/core/error.h"
#include "llmc/io/json_file.h"
#include "llmc/io/safetensors.h"
#include "llmc/model/causal_lm.h"
#include "llmc/prune/masks.h"
#include "llmc/prune/prune.h"
#include "llmc/quant/quantize.h"
#include "test_util.h"

using namespace llmc;
namespace fs = std::filesystem;

namespace {
nlohmann::json identity(const nlohmann::json& j) { return j; }

int64_t zeros(const at::Tensor& t) { return (t == 0).sum().item<int64_t>(); }

// A copy of a fixture directory whose weights `edit` may change.
std::string edited_copy(const test::TempDir& tmp, const std::string& name,
                        const std::function<void(io::StateDict&)>& edit) {
  const std::string dst = tmp / name;
  fs::create_directories(dst);
  for (const auto& e : fs::directory_iterator(test::fixture("opt_preln_f32"))) fs::copy(e.path(), fs::path(dst) / e.path().filename());
  io::StateDict sd;
  for (auto& [k, v] : io::SafetensorsFile::open(test::fixture("opt_preln_f32/model.safetensors")).load_all()) sd[k] = v.clone();
  edit(sd);
  io::save_safetensors(dst + "/model.safetensors", sd);
  return dst;
}
}  // namespace

// Exactly round(ratio * n) weights go, the smallest ones; equal scores go in index order.
TEST(Masks, LowestFractionIsExactAndStable) {
  at::Tensor s = at::tensor(std::vector<float>{5, 1, 3, 1, 2, 9, 1, 4}).reshape({2, 4});
  at::Tensor keep = prune::lowest_fraction_mask(s, 0.25);  // 2 of 8: the first two 1s
  EXPECT_EQ(keep.reshape(-1).to(c10::kLong).sum().item<int64_t>(), 6);
  EXPECT_FALSE(keep[0][1].item<bool>());
  EXPECT_FALSE(keep[0][3].item<bool>());
  EXPECT_TRUE(keep[1][2].item<bool>());  // the third 1 survives (tie order)
  at::manual_seed(0);
  at::Tensor w = at::randn({64, 96});
  at::Tensor k2 = prune::lowest_fraction_mask(w.abs(), 0.3);
  EXPECT_EQ(zeros(k2), static_cast<int64_t>(std::llround(0.3 * 64 * 96)));
  // Every removed |w| is <= every kept |w|.
  EXPECT_LE(w.abs().masked_select(k2.logical_not()).max().item<float>(), w.abs().masked_select(k2).min().item<float>());
}

TEST(Masks, GlobalScopeSharesOneThreshold) {
  at::manual_seed(1);
  at::Tensor a = at::randn({32, 32}) * 0.1;  // small weights: pruned more under one threshold
  at::Tensor b = at::randn({32, 32}) * 10.0;
  const auto masks = prune::global_lowest_fraction_masks({a.abs(), b.abs()}, 0.5);
  EXPECT_EQ(zeros(masks[0]) + zeros(masks[1]), 1024);
  EXPECT_GT(zeros(masks[0]), zeros(masks[1]));
  EXPECT_LE(at::cat({a.abs().masked_select(masks[0].logical_not()), b.abs().masked_select(masks[1].logical_not())}).max().item<float>(),
            at::cat({a.abs().masked_select(masks[0]), b.abs().masked_select(masks[1])}).min().item<float>());
}

TEST(Masks, EveryNOfMGroupHolds) {
  at::manual_seed(2);
  at::Tensor w = at::randn({16, 64});
  for (auto [n, m] : {std::pair<int64_t, int64_t>{2, 4}, {4, 8}, {1, 4}}) {
    at::Tensor keep = prune::n_of_m_mask(w.abs(), n, m);
    at::Tensor per_group = keep.reshape({-1, m}).to(c10::kLong).sum(1);
    EXPECT_TRUE((per_group == n).all().item<bool>()) << n << ":" << m;
  }
  EXPECT_THROW(prune::n_of_m_mask(at::randn({4, 6}), 2, 4), UsageError);
  EXPECT_EQ(prune::top_indices(at::tensor(std::vector<float>{1, 5, 5, 0, 3}), 3), (std::vector<int64_t>{1, 2, 4}));
}

// FFN neurons that are dead (zero fc1 row and bias, zero fc2 column) are exactly what
// structured magnitude pruning removes; the logits do not move (1e-5).
TEST(Prune, StructuredRemovesDeadNeuronsWithoutChangingLogits) {
  test::TempDir tmp;
  const std::string dead = edited_copy(tmp, "dead", [](io::StateDict& sd) {
    for (int l = 0; l < 2; ++l) {
      const std::string p = "model.decoder.layers." + std::to_string(l) + ".";
      for (int64_t j = 0; j < 64; j += 4) {  // 16 of 64 neurons
        sd[p + "fc1.weight"][j].zero_();
        sd[p + "fc1.bias"][j].zero_();
        sd[p + "fc2.weight"].select(1, j).zero_();
      }
    }
  });
  prune::PruneOptions o;
  o.model_path = dead;
  o.output_dir = tmp / "pruned";
  o.pruning_ratio = 0.25;
  auto ctx = test::cpu_context();
  const auto m = prune::run_prune(o, ctx, identity);
  EXPECT_EQ(m["ffn_dim_after"].get<int64_t>(), 48);
  EXPECT_DOUBLE_EQ(m["achieved_ratio"].get<double>(), 0.25);
  EXPECT_EQ(io::read_json_file(tmp / "pruned/config.json")["ffn_dim"].get<int64_t>(), 48);
  auto before = model::load_causal_lm(dead, ctx);
  auto after = model::load_causal_lm(tmp / "pruned", ctx);
  c10::InferenceMode guard;
  at::Tensor ids = at::tensor(std::vector<int64_t>{464, 2068, 7586, 21831, 18045, 625, 262}).unsqueeze(0);
  EXPECT_TRUE(at::allclose(after->forward(ids, at::ones_like(ids), nullptr), before->forward(ids, at::ones_like(ids), nullptr),
                           0, 1e-5));
  EXPECT_LT(m["disk_size_bytes_after"].get<int64_t>(), m["disk_size_bytes_before"].get<int64_t>());
}

// The layer driver: activation importance finds the dead neurons too (their activation is
// exactly 0), and Wanda prunes exactly round(ratio * in) weights of every row.
TEST(Prune, CalibrationMethodsRunLayerByLayer) {
  test::TempDir tmp;
  const std::string dead = edited_copy(tmp, "dead", [](io::StateDict& sd) {
    for (int l = 0; l < 2; ++l) {
      const std::string p = "model.decoder.layers." + std::to_string(l) + ".";
      for (int64_t j = 1; j < 64; j += 4) {
        sd[p + "fc1.weight"][j].zero_();
        sd[p + "fc1.bias"][j].zero_();
        sd[p + "fc2.weight"].select(1, j).zero_();
      }
    }
  });
  auto ctx = test::cpu_context();
  prune::PruneOptions o;
  o.model_path = dead;
  o.output_dir = tmp / "act";
  o.pruning_method = "activation";
  o.pruning_ratio = 0.25;
  o.calibration.calibration_file = test::fixture("eval.txt");
  o.calibration.num_calibration_samples = 4;
  o.calibration.calibration_seq_len = 32;
  prune::run_prune(o, ctx, identity);
  auto before = model::load_causal_lm(dead, ctx);
  auto after = model::load_causal_lm(tmp / "act", ctx);
  {
    c10::InferenceMode guard;
    at::Tensor ids = at::tensor(std::vector<int64_t>{464, 2068, 7586, 21831, 18045}).unsqueeze(0);
    EXPECT_TRUE(at::allclose(after->forward(ids, at::ones_like(ids), nullptr),
                             before->forward(ids, at::ones_like(ids), nullptr), 0, 1e-5));
  }
  o.model_path = test::fixture("opt_preln_f32");
  o.output_dir = tmp / "wanda";
  o.pruning_method = "wanda";
  o.pruning_type = "unstructured";
  o.pruning_ratio = 0.3;
  const auto m = prune::run_prune(o, ctx, identity);
  auto st = io::SafetensorsFile::open(tmp / "wanda/model.safetensors");
  for (const char* name : {"model.decoder.layers.0.fc1.weight", "model.decoder.layers.1.fc2.weight"}) {
    at::Tensor w = st.tensor(name);
    const int64_t per_row = static_cast<int64_t>(std::llround(0.3 * w.size(1)));
    EXPECT_TRUE(((w == 0).sum(1) >= per_row).all().item<bool>()) << name;
    EXPECT_TRUE(((w == 0).sum(1) <= per_row + 1).all().item<bool>()) << name;
  }
  // Wanda's choice differs from plain magnitude's somewhere (the input norms matter).
  o.pruning_method = "magnitude";
  o.output_dir = tmp / "mag";
  prune::run_prune(o, ctx, identity);
  EXPECT_FALSE(at::equal(st.tensor("model.decoder.layers.1.fc1.weight") == 0,
                         io::SafetensorsFile::open(tmp / "mag/model.safetensors").tensor("model.decoder.layers.1.fc1.weight") == 0));
}

TEST(Prune, UnstructuredLayerAndGlobalScopes) {
  test::TempDir tmp;
  auto ctx = test::cpu_context();
  prune::PruneOptions o;
  o.model_path = test::fixture("opt_preln_f32");
  o.pruning_type = "unstructured";
  o.pruning_ratio = 0.4;
  o.output_dir = tmp / "layer";
  const auto layer = prune::run_prune(o, ctx, identity);
  for (const auto& [name, l] : layer["linears"].items()) {
    const int64_t n = l["shape"][0].get<int64_t>() * l["shape"][1].get<int64_t>();
    EXPECT_NEAR(l["achieved_sparsity"].get<double>(), 0.4, 1.0 / n) << name;  // within one element
  }
  o.scope = "global";
  o.output_dir = tmp / "global";
  const auto global = prune::run_prune(o, ctx, identity);
  EXPECT_NEAR(global["achieved_sparsity"].get<double>(), 0.4, 1e-4);
  auto m = model::load_causal_lm(tmp / "global", ctx);  // loadable
  EXPECT_EQ(m->info().model_type, "opt");
}

// A quantized input is pruned in float and re-quantized with its own settings: the format
// stays, and the zeros survive (NF4 has an exact zero).
TEST(Prune, QuantizedInputKeepsItsFormatAndZeros) {
  test::TempDir tmp;
  auto ctx = test::cpu_context();
  quant::QuantizeOptions q;
  q.model_name_or_path = test::fixture("opt_preln_f32");
  q.output_dir = tmp / "nf4";
  q.blocksize = 32;
  quant::run_quantize(q, ctx, identity);
  prune::PruneOptions o;
  o.model_path = tmp / "nf4";
  o.output_dir = tmp / "nf4-pruned";
  o.pruning_type = "semi_structured";
  const auto m = prune::run_prune(o, ctx, identity);
  EXPECT_GE(m["achieved_sparsity"].get<double>(), 0.5);
  const auto config = io::read_json_file(tmp / "nf4-pruned/config.json");
  EXPECT_EQ(config["quantization_config"]["quant_method"], "bitsandbytes");
  auto st = io::SafetensorsFile::open(tmp / "nf4-pruned/model.safetensors");
  EXPECT_TRUE(st.contains("model.decoder.layers.0.fc1.weight.quant_state.bitsandbytes__nf4"));
  auto lm = model::load_causal_lm(tmp / "nf4-pruned", ctx);
  for (const auto& [name, p] : lm->packed_weights()) {
    at::Tensor keep = p->dequantize().reshape({-1, 4}) != 0;
    EXPECT_TRUE((keep.to(c10::kLong).sum(1) <= 2).all().item<bool>()) << name;  // 2:4 holds after re-quantization
  }
}

// hidden_size shrinks consistently (the loader checks every shape against config.json), and
// q_proj absorbs the attention-scale change: (hd'/hd)^0.5 on its weight and bias.
TEST(Prune, HiddenWidthShrinksEveryTiedWidth) {
  test::TempDir tmp;
  const std::string src = edited_copy(tmp, "src", [](io::StateDict& sd) {
    sd["model.decoder.layers.0.self_attn.q_proj.weight"].fill_(1.0);
    sd["model.decoder.layers.0.self_attn.q_proj.bias"].fill_(1.0);
  });
  auto ctx = test::cpu_context();
  prune::PruneOptions o;
  o.model_path = src;
  o.output_dir = tmp / "hidden";
  o.structure = "hidden";
  o.pruning_ratio = 0.25;  // 32 -> 24 (a multiple of 8 and of the 4 heads); head_dim 8 -> 6
  const auto m = prune::run_prune(o, ctx, identity);
  EXPECT_EQ(m["hidden_size_after"].get<int64_t>(), 24);
  const auto config = io::read_json_file(tmp / "hidden/config.json");
  EXPECT_EQ(config["hidden_size"].get<int64_t>(), 24);
  EXPECT_EQ(config["word_embed_proj_dim"].get<int64_t>(), 24);
  auto st = io::SafetensorsFile::open(tmp / "hidden/model.safetensors");
  const float fold = std::sqrt(6.0f / 8.0f);
  EXPECT_TRUE(at::allclose(st.tensor("model.decoder.layers.0.self_attn.q_proj.weight"), at::full({24, 24}, fold), 0, 1e-6));
  EXPECT_TRUE(at::allclose(st.tensor("model.decoder.layers.0.self_attn.q_proj.bias"), at::full({24}, fold), 0, 1e-6));
  EXPECT_EQ(st.tensor("model.decoder.embed_tokens.weight").size(1), 24);
  auto lm = model::load_causal_lm(tmp / "hidden", ctx);  // every shape agrees with config.json
  c10::InferenceMode guard;
  at::Tensor ids = at::tensor(std::vector<int64_t>{464, 2068, 7586}).unsqueeze(0);
  EXPECT_TRUE(lm->forward(ids, at::ones_like(ids), nullptr).isfinite().all().item<bool>());
  // With project_in/out (post-LN fixture) the embedding keeps its width.
  o.model_path = test::fixture("opt_postln_f16_bin");
  o.output_dir = tmp / "post";
  prune::run_prune(o, ctx, identity);
  EXPECT_EQ(io::read_json_file(tmp / "post/config.json")["word_embed_proj_dim"].get<int64_t>(), 16);
  EXPECT_NO_THROW(model::load_causal_lm(tmp / "post", ctx));
  // Activation importance (one calibration pass) picks channels too.
  o.pruning_method = "activation";
  o.calibration.calibration_file = test::fixture("eval.txt");
  o.calibration.num_calibration_samples = 4;
  o.calibration.calibration_seq_len = 32;
  o.output_dir = tmp / "post-act";
  prune::run_prune(o, ctx, identity);
  EXPECT_EQ(io::read_json_file(tmp / "post-act/config.json")["hidden_size"].get<int64_t>(), 24);
  EXPECT_NO_THROW(model::load_causal_lm(tmp / "post-act", ctx));
}

TEST(Prune, RefusesBadOptions) {
  prune::PruneOptions o;
  o.model_path = "x";
  o.output_dir = "y";
  o.pruning_ratio = 0.0;
  EXPECT_THROW(prune::validate(o), UsageError);
  o.pruning_ratio = 1.5;
  EXPECT_THROW(prune::validate(o), UsageError);
  o.pruning_ratio = 0.2;
  EXPECT_NO_THROW(prune::validate(o));
  o.pruning_type = "semi_structured";
  o.sparsity_pattern = "4:2";
  test::expect_error<UsageError>([&] { prune::validate(o); }, "1 <= N < M");
  o.pruning_type = "structured";
  o.scope = "global";
  test::expect_error<UsageError>([&] { prune::validate(o); }, "unstructured pruning only");
  o.scope = "layer";
  o.pruning_method = "obs";
  test::expect_error<UsageError>([&] { prune::validate(o); }, "supported: activation, magnitude, random, sparsegpt, wanda");
  o.pruning_method = "wanda";
  test::expect_error<UsageError>([&] { prune::validate(o); }, "ranks single weights");
  o.pruning_type = "unstructured";
  test::expect_error<UsageError>([&] { prune::validate(o); }, "needs calibration data");
  o.pruning_method = "activation";
  o.calibration.calibration_file = "x.txt";
  test::expect_error<UsageError>([&] { prune::validate(o); }, "structured pruning only");
  o.pruning_type = "structured";
  o.pruning_method = "magnitude";
  o.structure = "heads";
  test::expect_error<UsageError>([&] { prune::validate(o); }, "removing attention heads cannot be expressed");
}
