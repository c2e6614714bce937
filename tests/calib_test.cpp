// The calibration layer and the calibrated methods on hand-checkable cases: GPTQ with an
// identity Hessian is RTN; dead inputs come out zero; SparseGPT's update of the kept weights
// is the OBS solution (checked against a direct float64 solve); exact counts per block and
// per N:M group; AWQ at ratio 0 without clipping is RTN; dampening is raised when needed;
// the layer-wise run continues from its kept layers with the same result.
#include <ATen/TensorOperators.h>
#include <ATen/ops/allclose.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/kthvalue.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/eye.h>
#include <ATen/ops/linalg_solve.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <optional>

#include "llmc/calib/calibration.h"
#include "llmc/calib/obs.h"
#include "llmc/core/error.h"
#include "llmc/model/causal_lm.h"
#include "llmc/model/packed_weight.h"
#include "prune/sparsegpt.h"
#include "quant/awq.h"
#include "quant/gptq.h"
#include "test_util.h"

using namespace llmc;

namespace {

// A positive-definite Hessian from correlated inputs: 2/n X^T X.
at::Tensor hessian_of(const at::Tensor& x) { return at::matmul(x.t(), x) * (2.0 / static_cast<double>(x.size(0))); }

at::Tensor correlated_inputs(int64_t tokens, int64_t in, uint64_t seed) {
  at::manual_seed(seed);
  at::Tensor base = at::randn({tokens, in});
  at::Tensor mix = at::eye(in) + 0.3 * at::randn({in, in});
  return at::matmul(base, mix);
}

}  // namespace

// With H = I no error is passed on (the inverse factor is diagonal): GPTQ's codes are RTN's,
// bit for bit, symmetric and asymmetric, grouped and per row, 3 and 4 bits.
TEST(Gptq, IdentityHessianEqualsRtnExactly) {
  at::manual_seed(1);
  const at::Tensor w = at::randn({64, 128});
  for (bool sym : {true, false}) {
    for (int64_t bits : {3, 4}) {
      for (int64_t group : {int64_t{32}, int64_t{-1}}) {
        quant::GptqSettings s;
        s.bits = bits;
        s.group_size = group;
        s.sym = sym;
        s.damp_percent = 0.01;
        const quant::GptqResult r = quant::gptq_quantize(w, at::eye(128), s);
        const auto rtn = model::quantize_rtn_gptq(w, {bits, group, sym});
        const auto packed = model::pack_gptq(r.codes, r.scales, sym ? at::Tensor() : r.zeros, r.g_idx, {bits, group, sym});
        EXPECT_TRUE(at::equal(packed->dequantize(), rtn->dequantize())) << "sym " << sym << " bits " << bits << " group " << group;
      }
    }
  }
}

// Inputs that never fire (rank-deficient X with zero columns): their weights come out 0, and
// GPTQ's output error on the calibration inputs is below RTN's.
TEST(Gptq, DeadInputsAreZeroAndErrorIsBelowRtn) {
  at::Tensor x = correlated_inputs(512, 64, 2);
  x.select(1, 5).zero_();
  x.select(1, 40).zero_();
  const at::Tensor h = hessian_of(x);
  at::manual_seed(3);
  const at::Tensor w = at::randn({32, 64});
  for (bool desc_act : {false, true}) {
    quant::GptqSettings s;
    s.group_size = 16;
    s.desc_act = desc_act;
    const quant::GptqResult r = quant::gptq_quantize(w, h, s);
    EXPECT_EQ(r.dead_inputs, 2);
    EXPECT_TRUE((r.values.select(1, 5) == 0).all().item<bool>());
    EXPECT_TRUE((r.values.select(1, 40) == 0).all().item<bool>());
    // Static groups under act-order: g_idx stays one group per 16 columns.
    EXPECT_TRUE(at::equal(r.g_idx, at::arange(64, at::TensorOptions().dtype(c10::kLong)).div(16, "floor")));
    const double gptq = calib::output_error(w, r.values, h);
    const double rtn = calib::output_error(w, model::quantize_rtn_gptq(w, {4, 16, true})->dequantize(), h);
    EXPECT_LT(gptq, rtn) << "desc_act " << desc_act;
  }
}

// One pruned weight: the kept weights after it move to the float64 solution of
// min (W - W') H (W - W')^T with the columns before it fixed; the columns before it stay.
TEST(SparseGpt, OneColumnErrorFollowsTheObsSolution) {
  const int64_t n = 8;
  const at::Tensor h = hessian_of(correlated_inputs(200, n, 4));
  at::manual_seed(5);
  at::Tensor w = at::randn({1, n});
  w[0][0] = 1e-4;  // the smallest saliency by far: pruned first
  prune::SparseGptSettings s;
  s.sparsity = 1.0 / static_cast<double>(n);
  s.damp_percent = 0.0;
  const prune::SparseGptResult r = prune::sparsegpt_prune(w, h, s);
  ASSERT_EQ(r.weight[0][0].item<float>(), 0.0f);
  // Direct solve: d_rest = -H_rr^-1 H_r0 e, with e = w0 - 0.
  const at::Tensor hd = h.to(c10::kDouble);
  const at::Tensor h_rr = hd.slice(0, 1).slice(1, 1), h_r0 = hd.slice(0, 1).select(1, 0);
  const double e = w[0][0].item<double>();
  const at::Tensor d_rest = -at::linalg_solve(h_rr, h_r0.unsqueeze(1)).squeeze(1) * e;
  const at::Tensor want = w[0].slice(0, 1).to(c10::kDouble) - d_rest;
  EXPECT_TRUE(at::allclose(r.weight[0].slice(0, 1).to(c10::kDouble), want, 1e-5, 1e-6))
      << r.weight << "\n" << want;  // float32 Cholesky on a well-conditioned 8x8: 1e-5
}

// Unstructured: exactly round(rows * 128 * ratio) zeros in every 128-column block. N:M: exactly
// M - N zeros in every group of M of every row.
TEST(SparseGpt, ExactCountsPerBlockAndPerGroup) {
  const at::Tensor h = hessian_of(correlated_inputs(1024, 256, 6));
  at::manual_seed(7);
  const at::Tensor w = at::randn({48, 256});
  prune::SparseGptSettings s;
  s.sparsity = 0.5;
  const at::Tensor u = prune::sparsegpt_prune(w, h, s).weight;
  for (int64_t b = 0; b < 2; ++b) {
    EXPECT_EQ((u.slice(1, b * 128, (b + 1) * 128) == 0).sum().item<int64_t>(), std::llround(48 * 128 * 0.5)) << "block " << b;
  }
  s.keep_n = 2;
  s.group_m = 4;
  const at::Tensor nm = prune::sparsegpt_prune(w, h, s).weight;
  EXPECT_TRUE(((nm.reshape({48, 64, 4}) == 0).sum(2) == 2).all().item<bool>());
  s.keep_n = 5;
  s.group_m = 8;
  EXPECT_TRUE(((prune::sparsegpt_prune(w, h, s).weight.reshape({48, 32, 8}) == 0).sum(2) == 3).all().item<bool>());
  // And SparseGPT's output error at 50% is below plain magnitude's.
  const at::Tensor mag = w * (w.abs() > std::get<0>(w.abs().reshape(-1).kthvalue(48 * 128)));
  EXPECT_LT(calib::output_error(w, u, h), calib::output_error(w, mag, h));
}

// A Hessian that is only positive semi-definite: dampening 0 fails, the next step (0.01)
// works and is reported; one that no dampening below 1 fixes is an InputError.
TEST(Obs, DampeningIsRaisedWhenNeededAndReported) {
  at::Tensor v = at::tensor(std::vector<float>{1, 2, 3, 4}).unsqueeze(1);
  const at::Tensor h = at::matmul(v, v.t());  // rank 1, no zero diagonal
  const calib::InverseFactor f = calib::inverse_factor(h, 0.0);
  EXPECT_EQ(f.retries, 1);
  EXPECT_NEAR(f.damp_used, 0.01, 1e-12);
  test::expect_error<InputError>([&] { calib::inverse_factor(-at::eye(4), 0.01); }, "not positive definite");
}

// The factorization, GPTQ and SparseGPT work on the caller's Hessian instead of a copy (it is
// 268 MB for opt-1.3b's fc2) and leave it bit for bit as it was: with dead inputs (their
// diagonal entries are set to 1 while the factor is made), with a dampening retry, with
// act-order, and when no dampening helps (InputError).
TEST(Obs, TheCallersHessianIsLeftAsItWas) {
  for (bool inference : {false, true}) {  // the layer driver collects under InferenceMode
    at::manual_seed(11);
    const at::Tensor x = at::randn({256, 64});
    at::Tensor h;
    {
      std::optional<c10::InferenceMode> mode;
      if (inference) mode.emplace();
      h = at::matmul(x.t(), x);
      h[5].zero_();  // input 5 never fires
      h.select(1, 5).zero_();
    }
    EXPECT_EQ(h.is_inference(), inference);
    const at::Tensor before = h.clone();
    const at::Tensor w = at::randn({32, 64});
    calib::inverse_factor(h, 0.01);
    EXPECT_TRUE(at::equal(h, before));
    for (bool act_order : {false, true}) {
      quant::GptqSettings s;
      s.bits = 4;
      s.group_size = 16;
      s.desc_act = act_order;
      EXPECT_EQ(quant::gptq_quantize(w, h, s).dead_inputs, 1);
      EXPECT_TRUE(at::equal(h, before)) << act_order;
    }
    prune::SparseGptSettings sp;
    sp.sparsity = 0.5;
    EXPECT_EQ(prune::sparsegpt_prune(w, h, sp).dead_inputs, 1);
    EXPECT_TRUE(at::equal(h, before));
  }
  at::Tensor v = at::tensor(std::vector<float>{1, 2, 3, 4}).unsqueeze(1);
  at::Tensor rank1 = at::matmul(v, v.t());
  const at::Tensor rank1_before = rank1.clone();
  EXPECT_EQ(calib::inverse_factor(rank1, 0.0).retries, 1);
  EXPECT_TRUE(at::equal(rank1, rank1_before));
  at::Tensor neg = -at::eye(4);
  test::expect_error<InputError>([&] { calib::inverse_factor(neg, 0.01); }, "not positive definite");
  EXPECT_TRUE(at::equal(neg, -at::eye(4)));
}

namespace {

// The fixture model's layer-wise run with `method`, its calibration state in `state`.
std::unique_ptr<model::CausalLM> run_on_fixture(calib::LayerMethod& method, const std::string& state,
                                                calib::LayerwiseResult* result = nullptr) {
  auto ctx = test::cpu_context();
  auto lm = model::load_causal_lm(test::fixture("opt_preln_f32"), ctx);
  calib::CalibrationOptions co;
  co.calibration_file = test::fixture("eval.txt");
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(0);
  calib::LayerDriver driver(*lm, calib::calibration_ids(co, test::fixture("opt_preln_f32"), 32), 4, 32, gen);
  calib::LayerwiseOptions lo;
  lo.state_dir = state;
  lo.fingerprint = "{\"test\": 1}";
  auto r = calib::run_layerwise(*lm, driver, method, lo, ctx);
  if (result != nullptr) *result = r;
  return lm;
}

}  // namespace

// AWQ with only ratio 0, x-only scales and no clipping scales by 1: every Linear equals
// AWQ's round-to-nearest of the original weight, and no parameter changes.
TEST(Awq, RatioZeroWithoutClipEqualsRtn) {
  test::TempDir tmp;
  quant::AwqSettings s;
  s.group_size = 16;
  s.n_grid = 1;
  s.duo_scaling = false;
  s.clip = false;
  auto method = quant::make_awq_method(s);
  auto lm = run_on_fixture(*method, tmp / "state");
  auto ctx = test::cpu_context();
  auto original = model::load_causal_lm(test::fixture("opt_preln_f32"), ctx);
  int checked = 0;
  for (const auto& [name, p] : lm->packed_weights()) {
    const auto want = model::quantize_awq_rtn(original->linear_weight(name.substr(0, name.size() - 7)), 16);
    EXPECT_EQ(p->format(), "awq");
    EXPECT_TRUE(at::equal(p->dequantize(), want->dequantize())) << name;
    ++checked;
  }
  EXPECT_EQ(checked, 12);
  for (const auto& [name, t] : original->named_parameters()) {
    if (name.find("layer_norm") != std::string::npos) EXPECT_TRUE(at::equal(lm->parameter(name), t)) << name;
  }
}

// With the search on, AWQ folds scales into the norms and v_proj/fc1 and beats plain RTN's
// mean output error; the folded model computes what the packed Linears say.
TEST(Awq, SearchFoldsScalesAndLowersTheError) {
  test::TempDir tmp;
  quant::AwqSettings s;
  s.group_size = 16;
  auto method = quant::make_awq_method(s);
  calib::LayerwiseResult awq;
  run_on_fixture(*method, tmp / "awq", &awq);
  quant::AwqSettings plain = s;
  plain.n_grid = 1;
  plain.duo_scaling = false;
  plain.clip = false;
  auto rtn_method = quant::make_awq_method(plain);
  calib::LayerwiseResult rtn;
  run_on_fixture(*rtn_method, tmp / "rtn", &rtn);
  EXPECT_LE(awq.mean_output_error(), rtn.mean_output_error());
}

// A run whose first layer was kept continues from layer 1 and ends exactly like a run from
// scratch.
TEST(Layerwise, ContinuesFromKeptLayers) {
  test::TempDir tmp;
  quant::AwqSettings s;
  s.group_size = 16;
  auto full_method = quant::make_awq_method(s);
  auto full = run_on_fixture(*full_method, tmp / "full");
  // Keep only layer 0 of the state: as if killed during layer 1.
  std::filesystem::remove(tmp / "full/layer_00001.json");
  auto again_method = quant::make_awq_method(s);
  calib::LayerwiseResult r;
  auto again = run_on_fixture(*again_method, tmp / "full", &r);
  EXPECT_EQ(r.resumed_layers, 1);
  const auto a = full->packed_weights(), b = again->packed_weights();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(at::equal(a[i].second->dequantize(), b[i].second->dequantize())) << a[i].first;
  for (const auto& [name, t] : full->named_parameters()) EXPECT_TRUE(at::equal(again->parameter(name), t)) << name;
}
