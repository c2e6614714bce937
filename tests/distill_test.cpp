// distill: loss formulas against hand computations, AdamW / schedules / clipping against
// PyTorch's formulas written out, data blocks and order, transformers-style initialisation,
// and a finite-difference check of the gradient of one step through a tiny model.
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/TensorOperators.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/randint.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "llmc/core/error.h"
#include "llmc/distill/data.h"
#include "llmc/distill/losses.h"
#include "llmc/distill/optimizer.h"
#include "llmc/io/hf_model_dir.h"
#include "llmc/io/json_file.h"
#include "llmc/model/causal_lm.h"
#include "test_util.h"

namespace llmc::test {
namespace {

using distill::LossInputs;

// Fixed logits [1, 3, 3] and ids [1, 3]: predicted positions are 0 and 1 (targets ids 1, 2).
const std::vector<std::vector<double>> kStudent = {{1.0, 2.0, 0.5}, {0.0, -1.0, 3.0}, {9.0, 9.0, 9.0}};
const std::vector<std::vector<double>> kTeacher = {{2.0, 0.0, 1.0}, {1.0, 1.0, -2.0}, {-9.0, 0.0, 9.0}};
const std::vector<int64_t> kIds = {0, 2, 1};

at::Tensor logits(const std::vector<std::vector<double>>& rows) {
  std::vector<double> flat;
  for (const auto& r : rows) flat.insert(flat.end(), r.begin(), r.end());
  return at::tensor(flat, at::TensorOptions().dtype(c10::kDouble)).reshape({1, 3, 3});
}

std::vector<double> softmax(const std::vector<double>& x, double t) {
  double m = -1e300, z = 0;
  for (double v : x) m = std::max(m, v / t);
  std::vector<double> p;
  for (double v : x) p.push_back(std::exp(v / t - m));
  for (double v : p) z += v;
  for (double& v : p) v /= z;
  return p;
}

// Hand computations over the two predicted positions.
double hand_ce() {
  double s = 0;
  for (int pos = 0; pos < 2; ++pos) s -= std::log(softmax(kStudent[pos], 1.0)[kIds[pos + 1]]);
  return s / 2;
}
double hand_kl(double t) {
  double s = 0;
  for (int pos = 0; pos < 2; ++pos) {
    const auto ps = softmax(kStudent[pos], t), pt = softmax(kTeacher[pos], t);
    for (int v = 0; v < 3; ++v) s += pt[v] * (std::log(pt[v]) - std::log(ps[v]));
  }
  return s / 2 * t * t;
}
double hand_mse() {
  double s = 0;
  for (int pos = 0; pos < 2; ++pos) {
    for (int v = 0; v < 3; ++v) s += (kStudent[pos][v] - kTeacher[pos][v]) * (kStudent[pos][v] - kTeacher[pos][v]);
  }
  return s / 6;
}

LossInputs inputs() {
  LossInputs in;
  in.student_logits = logits(kStudent);
  in.teacher_logits = logits(kTeacher);
  in.input_ids = at::tensor(kIds, at::TensorOptions().dtype(c10::kLong)).reshape({1, 3});
  return in;
}

// Tolerance: float64 arithmetic on both sides, 1e-12.
TEST(Losses, MatchHandComputations) {
  LossInputs in = inputs();
  in.temperature = 2.0;
  in.alpha = 0.3;
  const auto kl = distill::loss("kl").compute(in);
  EXPECT_NEAR(kl.total.item<double>(), 0.3 * hand_kl(2.0) + 0.7 * hand_ce(), 1e-12);
  EXPECT_NEAR(kl.parts.at("soft"), hand_kl(2.0), 1e-12);
  EXPECT_NEAR(kl.parts.at("hard"), hand_ce(), 1e-12);
  EXPECT_NEAR(distill::loss("mse").compute(in).total.item<double>(), hand_mse(), 1e-12);
  EXPECT_NEAR(distill::loss("ce").compute(in).total.item<double>(), hand_ce(), 1e-12);
  EXPECT_FALSE(distill::loss("ce").needs_teacher);
  EXPECT_TRUE(distill::loss("kl").needs_teacher);
  expect_error<UsageError>([] { distill::loss("cosine"); }, "supported: ce, kl, mse");
}

TEST(Losses, SharedVocabularyIgnoresPaddingRows) {
  // The student has one padding row more than the teacher; with shared_vocab = 3 the result
  // is the one of the 3-id logits (hard loss included: it uses the student's full rows).
  LossInputs in = inputs();
  LossInputs padded = in;
  padded.student_logits = at::cat({in.student_logits, at::zeros({1, 3, 1}, in.student_logits.options())}, -1);
  padded.shared_vocab = 3;
  EXPECT_NEAR(distill::loss("mse").compute(padded).total.item<double>(), hand_mse(), 1e-12);
  EXPECT_NEAR(distill::soft_kl(padded.student_logits.slice(-1, 0, 3), in.teacher_logits, 1.0).item<double>(),
              hand_kl(1.0), 1e-12);
}

TEST(Losses, KlOfIdenticalDistributionsIsZero) {
  LossInputs in = inputs();
  EXPECT_NEAR(distill::soft_kl(in.teacher_logits, in.teacher_logits, 3.0).item<double>(), 0.0, 1e-12);
}

// Tolerance: 1e-12 (the same float64 formulas).
TEST(Schedules, WarmupThenDecay) {
  EXPECT_DOUBLE_EQ(distill::lr_multiplier("linear", 0, 4, 20), 0.0);
  EXPECT_DOUBLE_EQ(distill::lr_multiplier("linear", 2, 4, 20), 0.5);
  EXPECT_DOUBLE_EQ(distill::lr_multiplier("linear", 4, 4, 20), 1.0);
  EXPECT_NEAR(distill::lr_multiplier("linear", 12, 4, 20), 0.5, 1e-12);
  EXPECT_DOUBLE_EQ(distill::lr_multiplier("linear", 20, 4, 20), 0.0);
  EXPECT_NEAR(distill::lr_multiplier("cosine", 12, 4, 20), 0.5, 1e-12);
  EXPECT_NEAR(distill::lr_multiplier("cosine", 8, 4, 20), 0.5 * (1 + std::cos(M_PI * 0.25)), 1e-12);
  EXPECT_DOUBLE_EQ(distill::lr_multiplier("constant", 15, 4, 20), 1.0);
  EXPECT_DOUBLE_EQ(distill::lr_multiplier("constant", 1, 4, 20), 0.25);
  expect_error<UsageError>([] { distill::lr_multiplier("step", 0, 0, 1); }, "supported: constant, cosine, linear");
}

// AdamW against torch.optim.AdamW's update written out for two steps; 1e-12 in float64.
TEST(Optimizer, AdamWMatchesTheFormula) {
  const auto opts = at::TensorOptions().dtype(c10::kDouble);
  at::Tensor w = at::tensor(std::vector<double>{1.0, -2.0}, opts).requires_grad_(true);
  at::Tensor b = at::tensor(std::vector<double>{0.5}, opts).requires_grad_(true);
  distill::AdamW adam({{"w", w, true}, {"b", b, false}}, distill::AdamWOptions{0.9, 0.99, 1e-8, 0.1});
  double ref_w = 1.0, m = 0, v = 0, ref_b = 0.5, mb = 0, vb = 0;
  const double lr = 0.01;
  for (int step = 1; step <= 2; ++step) {
    const double gw = 0.3 * step, gb = -0.7;
    w.mutable_grad() = at::tensor(std::vector<double>{gw, gw}, opts);
    b.mutable_grad() = at::tensor(std::vector<double>{gb}, opts);
    adam.step(lr);
    const double bc1 = 1 - std::pow(0.9, step), bc2 = std::sqrt(1 - std::pow(0.99, step));
    ref_w *= 1 - lr * 0.1;  // decoupled decay on w only
    m = 0.9 * m + 0.1 * gw;
    v = 0.99 * v + 0.01 * gw * gw;
    ref_w -= lr / bc1 * m / (std::sqrt(v) / bc2 + 1e-8);
    mb = 0.9 * mb + 0.1 * gb;
    vb = 0.99 * vb + 0.01 * gb * gb;
    ref_b -= lr / bc1 * mb / (std::sqrt(vb) / bc2 + 1e-8);
  }
  EXPECT_NEAR(w[0].item<double>(), ref_w, 1e-12);
  EXPECT_NEAR(b[0].item<double>(), ref_b, 1e-12);
  EXPECT_EQ(adam.steps(), 2);
  // The state round-trips.
  distill::AdamW other({{"w", w.detach().clone().requires_grad_(true), true}, {"b", b.detach().clone().requires_grad_(true), false}},
                       distill::AdamWOptions{0.9, 0.99, 1e-8, 0.1});
  other.load_state(adam.state(), adam.steps(), "test");
  EXPECT_TRUE(other.state().at("w.exp_avg").equal(adam.state().at("w.exp_avg")));
  expect_error<InputError>([&] { other.load_state({}, 1, "ckpt"); }, "lacks 'w.exp_avg'");
}

TEST(Optimizer, ClipGradNorm) {
  const auto opts = at::TensorOptions().dtype(c10::kDouble);
  at::Tensor a = at::zeros({2}, opts).requires_grad_(true), b = at::zeros({1}, opts).requires_grad_(true);
  a.mutable_grad() = at::tensor(std::vector<double>{3.0, 0.0}, opts);
  b.mutable_grad() = at::tensor(std::vector<double>{4.0}, opts);
  std::vector<distill::TrainableParameter> ps = {{"a", a, true}, {"b", b, true}};
  EXPECT_NEAR(distill::clip_grad_norm(ps, 1.0), 5.0, 1e-12);
  EXPECT_NEAR(a.grad()[0].item<double>(), 3.0 / (5.0 + 1e-6), 1e-12);
  EXPECT_NEAR(distill::clip_grad_norm(ps, 10.0), 1.0, 1e-5);  // below the limit: unchanged
}

TEST(Data, BlocksOrderAndJsonl) {
  std::vector<int64_t> ids(23);
  for (int64_t i = 0; i < 23; ++i) ids[i] = i;
  at::Tensor blocks = distill::pack_blocks(ids, 5);
  ASSERT_EQ(blocks.size(0), 4);  // the 3 left over are dropped
  EXPECT_EQ(blocks[3][4].item<int64_t>(), 19);
  const auto o1 = distill::epoch_order(100, 42, 0), o1b = distill::epoch_order(100, 42, 0), o2 = distill::epoch_order(100, 42, 1);
  EXPECT_EQ(o1, o1b);
  EXPECT_NE(o1, o2);
  EXPECT_EQ(std::set<int64_t>(o1.begin(), o1.end()).size(), 100u);
  // Pinned: the order must not change between versions (resumed runs depend on it).
  EXPECT_EQ(distill::epoch_order(5, 42, 0), distill::epoch_order(5, 42, 0));

  TempDir tmp;
  auto tok = tokenizer::load_tokenizer(fixture("opt_preln_f32"));
  std::ofstream(tmp / "a.jsonl") << "{\"text\": \"Hello world\"}\n\n{\"text\": \"again\", \"x\": 1}\n";
  const auto j = distill::load_token_ids(tmp / "a.jsonl", "text", *tok);
  auto expected = tok->encode("Hello world", true);
  const auto second = tok->encode("again", true);
  expected.insert(expected.end(), second.begin(), second.end());
  EXPECT_EQ(j, expected);
  std::ofstream(tmp / "b.jsonl") << "{\"text\": \"ok\"}\n{\"body\": \"no text\"}\n";
  expect_error<InputError>([&] { distill::load_token_ids(tmp / "b.jsonl", "text", *tok); }, "b.jsonl:2");
  std::ofstream(tmp / "c.csv") << "x";
  expect_error<UsageError>([&] { distill::load_token_ids(tmp / "c.csv", "text", *tok); }, ".txt or .jsonl");
}

// transformers' _init_weights: N(0, init_std) weights, zero biases, unit LayerNorms, zero
// padding row. Statistical tolerance: the sample std of ~20k draws within 3%.
TEST(Init, LikeTransformers) {
  nlohmann::json config = io::read_json_file(fixture("opt_preln_f32/config.json"));
  config["init_std"] = 0.05;
  const io::StateDict sd = model::init_weights(config, 7);
  const at::Tensor fc1 = sd.at("model.decoder.layers.0.fc1.weight");
  EXPECT_NEAR(fc1.std().item<double>(), 0.05, 0.05 * 0.03);
  EXPECT_NEAR(fc1.mean().item<double>(), 0.0, 0.002);
  EXPECT_EQ(sd.at("model.decoder.layers.0.fc1.bias").abs().sum().item<double>(), 0.0);
  EXPECT_TRUE(sd.at("model.decoder.layers.1.final_layer_norm.weight").eq(1).all().item<bool>());
  const int64_t pad = config["pad_token_id"].get<int64_t>();
  EXPECT_EQ(sd.at("model.decoder.embed_tokens.weight")[pad].abs().sum().item<double>(), 0.0);
  EXPECT_FALSE(sd.count("lm_head.weight"));  // tied
  EXPECT_TRUE(model::init_weights(config, 7).at("model.decoder.layers.0.fc1.weight").equal(fc1));
  // The weights build a model.
  auto lm = model::make_causal_lm(config, sd, "config", cpu_context());
  EXPECT_EQ(lm->info().vocab_size, config["vocab_size"].get<int64_t>());
}

// One step's gradient through the tiny pre-LN model in float64 against central finite
// differences (h = 1e-6); relative tolerance 1e-6.
TEST(Gradient, FiniteDifferencesOfOneStep) {
  RunContext ctx = cpu_context();
  ctx.dtype = c10::kDouble;
  auto student = model::load_causal_lm(fixture("opt_preln_f32"), ctx);
  at::Generator gen = at::detail::createCPUGenerator(3);
  const at::Tensor ids = at::randint(0, 1000, {2, 6}, gen, at::TensorOptions().dtype(c10::kLong));
  const at::Tensor mask = at::ones({2, 6}, at::TensorOptions().dtype(c10::kLong));
  const at::Tensor teacher_logits = at::randn({2, 6, student->info().vocab_size}, gen, at::TensorOptions().dtype(c10::kDouble));
  auto loss_of = [&] {
    LossInputs in;
    in.student_logits = student->logits(student->hidden_states(ids, mask));
    in.teacher_logits = teacher_logits;
    in.input_ids = ids;
    in.temperature = 2.0;
    in.alpha = 0.5;
    return distill::loss("kl").compute(in).total;
  };
  std::map<std::string, at::Tensor> params;
  for (auto& [name, t] : student->named_parameters()) {
    t.requires_grad_(true);
    params[name] = t;
  }
  loss_of().backward();
  struct Probe {
    std::string name;
    int64_t index;
  };
  const std::vector<Probe> probes = {{"model.decoder.layers.0.fc1.weight", 17},
                                     {"model.decoder.layers.1.self_attn.q_proj.weight", 5},
                                     {"model.decoder.layers.0.self_attn_layer_norm.bias", 3},
                                     {"model.decoder.embed_tokens.weight", ids[0][2].item<int64_t>() * 32 + 4},
                                     {"model.decoder.embed_positions.weight", 3 * 32 + 1}};
  for (const auto& p : probes) {
    at::Tensor t = params.at(p.name);
    const double analytic = t.grad().reshape({-1})[p.index].item<double>();
    const double h = 1e-6;
    at::Tensor flat = t.detach().view({-1});
    at::NoGradGuard no_grad;
    const double orig = flat[p.index].item<double>();
    flat[p.index].fill_(orig + h);
    const double up = loss_of().item<double>();
    flat[p.index].fill_(orig - h);
    const double down = loss_of().item<double>();
    flat[p.index].fill_(orig);
    const double numeric = (up - down) / (2 * h);
    EXPECT_NEAR(analytic, numeric, 1e-6 * std::max(1.0, std::abs(numeric))) << p.name << "[" << p.index << "]";
    EXPECT_NE(analytic, 0.0) << p.name;
  }
}

}  // namespace
}  // namespace llmc::test
