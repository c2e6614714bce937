// Packed formats (bitsandbytes NF4/FP4 + double quant, LLM.int8, GPTQ v1 layout), their
// kernels, and the quantize driver.
#include <ATen/TensorOperators.h>
#include <ATen/ops/abs.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/full.h>
#include <ATen/ops/allclose.h>
#include <ATen/ops/cat.h>
#include <c10/core/InferenceMode.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/randint.h>
#include <ATen/ops/rand.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/randperm.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "llmc/core/error.h"
#include "llmc/io/json_file.h"
#include "llmc/io/safetensors.h"
#include "llmc/model/causal_lm.h"
#include "llmc/model/packed_weight.h"
#include "llmc/quant/quantize.h"
#include "model/kernels/kernels.h"
#include "test_util.h"

using namespace llmc;
using model::NamedTensors;

namespace {

double rel_error(const at::Tensor& w, const at::Tensor& d) { return (w - d).norm().item<double>() / w.norm().item<double>(); }

std::map<std::string, at::Tensor> as_map(const NamedTensors& v) { return {v.begin(), v.end()}; }

// Through a state dict and the loader, with the layout config.json would announce.
std::unique_ptr<model::PackedWeight> reload(const model::PackedWeight& w, int64_t out, int64_t in) {
  auto m = as_map(w.state_dict("p."));
  model::PackedLayout layout;
  if (w.format() == "awq") layout.quant_method = "awq";
  if (w.format() == "gptq") {
    layout.quant_method = "gptq";
    layout.checkpoint_format = w.checkpoint_format();
  }
  return model::load_packed_weight(
      "p.", [&](const std::string& n) { return m.count(n) != 0; }, [&](const std::string& n) { return m.at(n); }, out, in,
      layout);
}

model::Bnb4Options bnb(const std::string& type, bool dq, int64_t bs = 64) {
  model::Bnb4Options o;
  o.quant_type = type;
  o.double_quant = dq;
  o.blocksize = bs;
  return o;
}

}  // namespace

// bitsandbytes' documented tables (docs/formats.md §5.1), exactly.
TEST(Bnb4, CodeTablesAreBitsandbytesTables) {
  const auto nf4 = model::bnb4_code_table("nf4");
  ASSERT_EQ(nf4.size(), 16u);
  EXPECT_EQ(nf4[0], -1.0f);
  EXPECT_EQ(nf4[7], 0.0f);
  EXPECT_EQ(nf4[8], 0.07958029955625534f);
  EXPECT_EQ(nf4[15], 1.0f);
  EXPECT_TRUE(std::is_sorted(nf4.begin(), nf4.end()));
  const auto fp4 = model::bnb4_code_table("fp4");
  const float raw[16] = {0, 0.0625f, 8, 12, 4, 6, 2, 3, -0.0f, -0.0625f, -8, -12, -4, -6, -2, -3};
  for (int i = 0; i < 16; ++i) EXPECT_EQ(fp4[static_cast<size_t>(i)], raw[i] / 12.0f) << i;
  EXPECT_THROW(model::bnb4_code_table("nf3"), UsageError);
}

TEST(Bnb4, DynamicMapHasItsDocumentedProperties) {
  at::Tensor m = model::bnb_dynamic_map();
  ASSERT_EQ(m.numel(), 256);
  const float* p = m.data_ptr<float>();
  EXPECT_TRUE(std::is_sorted(p, p + 256));
  EXPECT_EQ(std::count(p, p + 256, 0.0f), 1);
  EXPECT_EQ(std::count(p, p + 256, 1.0f), 1);
  EXPECT_EQ(std::count(p, p + 256, -1.0f), 0);
  EXPECT_NEAR(p[254], 0.99296875f, 1e-6);            // largest below 1
  EXPECT_NEAR(p[128], 0.55e-6f, 1e-9);               // smallest positive magnitude
  EXPECT_NEAR(p[0], -0.99296875f, 1e-6);
}

// Codes of exact table values come back as their indices, packed two per byte with the
// first element in the high nibble.
TEST(Bnb4, PacksNearestCodesHighNibbleFirst) {
  const auto nf4 = model::bnb4_code_table("nf4");
  std::vector<float> row;
  for (int rep = 0; rep < 4; ++rep) {
    for (int i = 0; i < 16; ++i) row.push_back(nf4[static_cast<size_t>((i + rep * 5) % 16)] * 2.0f);
  }
  at::Tensor w = at::tensor(row).reshape({1, 64});
  auto q = model::quantize_bnb4(w, bnb("nf4", false));
  auto sd = as_map(q->state_dict("p."));
  at::Tensor packed = sd.at("p.weight");
  EXPECT_EQ(packed.sizes(), at::IntArrayRef({32, 1}));
  EXPECT_EQ(packed.scalar_type(), c10::kByte);
  EXPECT_EQ(packed[0][0].item<int>(), (0 << 4) | 1);
  EXPECT_EQ(packed[1][0].item<int>(), (2 << 4) | 3);
  EXPECT_EQ(sd.at("p.weight.absmax").item<float>(), 2.0f);
  EXPECT_TRUE(at::equal(q->dequantize(), w));  // table values reconstruct exactly
}

TEST(Bnb4, TiesGoToTheLowerCode) {
  const auto nf4 = model::bnb4_code_table("nf4");
  const float mid = (nf4[8] + nf4[9]) / 2.0f;  // float32 midpoint, as the reference computes it
  std::vector<float> row(64, 0.0f);
  row[0] = 1.0f;  // absmax 1
  row[1] = mid;
  auto q = model::quantize_bnb4(at::tensor(row).reshape({1, 64}), bnb("nf4", false));
  EXPECT_EQ(as_map(q->state_dict("p.")).at("p.weight")[0][0].item<int>(), (15 << 4) | 8);
  // FP4: sign bit for negatives, |x| at a threshold stays in the lower magnitude.
  row[1] = -0.5f;
  auto f = model::quantize_bnb4(at::tensor(row).reshape({1, 64}), bnb("fp4", false));
  EXPECT_EQ(as_map(f->state_dict("p.")).at("p.weight")[0][0].item<int>(), (0b0011 << 4) | 0b1101);
}

// Error budgets on N(0,1) weights (relative Frobenius error): NF4 <= 0.11, FP4 <= 0.14,
// double quantization adds <= 0.005, int8 <= 0.01.
TEST(Bnb4, ErrorBudgets) {
  at::manual_seed(0);
  at::Tensor w = at::randn({256, 512});
  const double nf4 = rel_error(w, model::quantize_bnb4(w, bnb("nf4", false))->dequantize());
  const double nf4dq = rel_error(w, model::quantize_bnb4(w, bnb("nf4", true))->dequantize());
  const double fp4 = rel_error(w, model::quantize_bnb4(w, bnb("fp4", true))->dequantize());
  const double i8 = rel_error(w, model::quantize_int8(w)->dequantize());
  EXPECT_LT(nf4, 0.11);
  EXPECT_LT(nf4dq, nf4 + 0.005);
  EXPECT_LT(fp4, 0.14);
  EXPECT_LT(i8, 0.01);
  EXPECT_GT(nf4, 0.05);  // the test would notice a no-op quantizer
}

// Double quantization: each block's absmax is within half a step of the dynamic map
// (<= 0.0075 of its 256-block's scale; the map's coarsest step is 0.9/64) of the original.
TEST(Bnb4, DoubleQuantAbsmaxErrorIsBounded) {
  at::manual_seed(1);
  at::Tensor w = at::randn({512, 512}) * (at::randn({512, 1}).abs() + 0.1);
  auto plain = model::quantize_bnb4(w, bnb("nf4", false));
  auto nested = model::quantize_bnb4(w, bnb("nf4", true));
  auto ps = as_map(plain->state_dict("p."));
  auto ns = as_map(nested->state_dict("p."));
  at::Tensor absmax = ps.at("p.weight.absmax");
  EXPECT_EQ(ns.at("p.weight.absmax").scalar_type(), c10::kByte);
  EXPECT_EQ(ns.at("p.weight.nested_absmax").numel(), (absmax.numel() + 255) / 256);
  // Recover the dequantized absmax from the stored pieces, as bitsandbytes does.
  const std::string js(reinterpret_cast<const char*>(ns.at("p.weight.quant_state.bitsandbytes__nf4").data_ptr<uint8_t>()),
                       static_cast<size_t>(ns.at("p.weight.quant_state.bitsandbytes__nf4").numel()));
  const auto state = nlohmann::json::parse(js);
  const float offset = state.at("nested_offset").get<float>();
  at::Tensor dq = ns.at("p.weight.nested_quant_map").index_select(0, ns.at("p.weight.absmax").to(c10::kLong)) *
                      ns.at("p.weight.nested_absmax").repeat_interleave(256).slice(0, 0, absmax.numel()) + offset;
  at::Tensor bound = ns.at("p.weight.nested_absmax").repeat_interleave(256).slice(0, 0, absmax.numel()) * 0.0075 + 1e-6;
  EXPECT_TRUE(((dq - absmax).abs() <= bound).all().item<bool>());
  EXPECT_NEAR(offset, absmax.mean().item<float>(), 1e-6);
}

TEST(Bnb4, QuantStateJsonIsBitsandbytesPacked) {
  auto q = model::quantize_bnb4(at::randn({64, 128}), bnb("nf4", true));
  auto sd = as_map(q->state_dict("model.decoder.layers.0.fc1."));
  const at::Tensor t = sd.at("model.decoder.layers.0.fc1.weight.quant_state.bitsandbytes__nf4");
  const std::string js(reinterpret_cast<const char*>(t.data_ptr<uint8_t>()), static_cast<size_t>(t.numel()));
  EXPECT_EQ(js.rfind("{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float16\", \"shape\": [64, 128], "
                     "\"nested_blocksize\": 256, \"nested_dtype\": \"float32\", \"nested_offset\": ", 0), 0u) << js;
  for (const char* k : {"weight", "weight.absmax", "weight.quant_map", "weight.nested_absmax", "weight.nested_quant_map"}) {
    EXPECT_TRUE(sd.count(std::string("model.decoder.layers.0.fc1.") + k)) << k;
  }
  EXPECT_EQ(sd.at("model.decoder.layers.0.fc1.weight.quant_map").numel(), 16);
  EXPECT_EQ(sd.at("model.decoder.layers.0.fc1.weight.nested_quant_map").numel(), 256);
}

TEST(PackedWeight, StateDictRoundTripsExactly) {
  at::manual_seed(2);
  at::Tensor w = at::randn({96, 256});
  std::vector<std::unique_ptr<model::PackedWeight>> all;
  all.push_back(model::quantize_bnb4(w, bnb("nf4", true)));
  all.push_back(model::quantize_bnb4(w, bnb("fp4", false, 128)));
  all.push_back(model::quantize_int8(w));
  for (int64_t bits : {2, 3, 4, 8}) all.push_back(model::quantize_rtn_gptq(w, {bits, 64}));
  for (int64_t bits : {2, 3, 4, 8}) all.push_back(model::quantize_rtn_gptq(w, {bits, 64, /*sym=*/false}));  // gptq_v2
  all.push_back(model::quantize_awq_rtn(w, 64));
  all.push_back(model::quantize_awq_rtn(w, 256));
  for (const auto& q : all) {
    // Re-quantizing with the same settings reproduces the packing exactly (what prune needs).
    auto again = q->requantize(w);
    EXPECT_TRUE(at::equal(again->dequantize(), q->dequantize())) << q->format();
    EXPECT_EQ(again->nbytes(), q->nbytes()) << q->format();
    auto back = reload(*q, 96, 256);
    ASSERT_TRUE(back) << q->format();
    EXPECT_EQ(back->format(), q->format());
    EXPECT_TRUE(at::equal(back->dequantize(), q->dequantize())) << q->format();
  }
}

TEST(PackedWeight, LoaderRefusesMalformedData) {
  auto q = model::quantize_bnb4(at::randn({64, 128}), bnb("nf4", true));
  auto m = as_map(q->state_dict("p."));
  auto has = [&](const std::string& n) { return m.count(n) != 0; };
  auto take = [&](const std::string& n) { return m.at(n); };
  test::expect_error<InputError>([&] { model::load_packed_weight("p.", has, take, 128, 64); }, "describes shape [64, 128]");
  m["p.weight.absmax"] = m["p.weight.absmax"].slice(0, 0, 10);
  test::expect_error<InputError>([&] { model::load_packed_weight("p.", has, take, 64, 128); }, "p.weight.absmax");
}

// Every kernel variant this CPU has equals the scalar reference (float sums: 1e-4 relative).
TEST(Kernels, VariantsMatchTheScalarReference) {
  namespace k = model::kernels;
  const int64_t out = 37, in = 512, bs = 64;
  at::manual_seed(3);
  at::Tensor packed = at::randint(0, 256, {out * in / 2}, at::TensorOptions().dtype(c10::kByte));
  at::Tensor absmax = at::randn({out * in / bs}).abs();
  const auto lut = model::bnb4_code_table("nf4");
  at::Tensor xe = at::randn({in / 2}), xo = at::randn({in / 2}), x = at::randn({in});
  at::Tensor cb = at::randint(-127, 128, {out, in}, at::TensorOptions().dtype(c10::kChar));
  at::Tensor scale = at::randn({out}).abs();
  at::Tensor wf = at::randn({out, in});
  // AWQ: 136 outputs (17 words: a chunk of 16 and one more), groups of 64.
  const int64_t awq_out = 136, awq_group = 64;
  at::Tensor aq = at::randint(INT32_MIN, INT32_MAX, {in, awq_out / 8}, at::TensorOptions().dtype(c10::kInt));
  at::Tensor az = at::randint(INT32_MIN, INT32_MAX, {in / awq_group, awq_out / 8}, at::TensorOptions().dtype(c10::kInt));
  at::Tensor as = (at::randn({in / awq_group, awq_out}).abs() * 0.01).to(c10::kHalf);
  at::Tensor agx = x.reshape({in / awq_group, awq_group}).sum(1).contiguous();
  auto run = [&](const k::KernelSet& ks) {
    at::Tensor y4 = at::zeros({out}), y8 = at::zeros({out}), y32 = at::zeros({out}), deq = at::zeros({out, in});
    ks.dot4(packed.data_ptr<uint8_t>(), absmax.data_ptr<float>(), lut.data(), 0, out, in, bs, xe.data_ptr<float>(),
            xo.data_ptr<float>(), y4.data_ptr<float>());
    ks.dot8(cb.data_ptr<int8_t>(), scale.data_ptr<float>(), 0, out, in, x.data_ptr<float>(), y8.data_ptr<float>());
    ks.dot32(wf.data_ptr<float>(), 0, out, in, x.data_ptr<float>(), y32.data_ptr<float>());
    // Rows 3..20 of the dequantized matrix (not starting at 0: exercises the offsets).
    ks.dequant4(packed.data_ptr<uint8_t>(), absmax.data_ptr<float>(), lut.data(), 3, 20, in, bs,
                deq.data_ptr<float>() + 3 * in);
    at::Tensor ya = at::zeros({awq_out});
    ks.dot_awq(aq.data_ptr<int32_t>(), az.data_ptr<int32_t>(), reinterpret_cast<const uint16_t*>(as.data_ptr<c10::Half>()), 0,
               awq_out / 8, in, awq_out, awq_group, x.data_ptr<float>(), agx.data_ptr<float>(), ya.data_ptr<float>());
    return std::vector<at::Tensor>{y4, y8, y32, deq, ya};
  };
  const auto ref = run(k::scalar_kernels());
  int checked = 0;
  for (const k::KernelSet* ks : {k::avx2_kernels(), k::avx512_kernels()}) {
    if (ks == nullptr) continue;
    const auto got = run(*ks);
    for (size_t i = 0; i < ref.size(); ++i) {
      EXPECT_TRUE(at::allclose(got[i], ref[i], 1e-4, 1e-4)) << ks->name << " output " << i;
    }
    ++checked;
  }
  std::cout << "kernel variants checked against scalar: " << checked << " (best: " << k::best_kernels().name << ")\n";
}

// The packed products (matrix-vector and tiled) equal x @ dequantize()^T.
TEST(PackedWeight, MatmulEqualsDequantizedProduct) {
  at::manual_seed(4);
  at::Tensor w = at::randn({200, 256});
  std::vector<std::unique_ptr<model::PackedWeight>> all;
  all.push_back(model::quantize_bnb4(w, bnb("nf4", true)));
  all.push_back(model::quantize_bnb4(at::randn({30, 50}), bnb("fp4", true)));  // blocks cross rows
  all.push_back(model::quantize_int8(w));
  all.push_back(model::quantize_rtn_gptq(w, {4, 128}));
  all.push_back(model::quantize_rtn_gptq(w.narrow(0, 0, 192), {3, -1}));
  all.push_back(model::quantize_rtn_gptq(w, {4, 64, false}));
  all.push_back(model::quantize_awq_rtn(w, 128));
  for (const auto& q : all) {
    for (int64_t rows : {1, 3, 17}) {
      at::Tensor x = at::randn({rows, q->in_features()});
      at::Tensor want = at::matmul(x, q->dequantize().t());
      at::Tensor got = q->matmul(x.unsqueeze(0)).squeeze(0);
      EXPECT_TRUE(at::allclose(got, want, 1e-4, 1e-3)) << q->format() << " rows " << rows;
    }
  }
}

// GPTQ v1 layout (docs/formats.md §6): 4-bit, the first input channel of each 8 in bits 0-3;
// symmetric zero 8 stored as 7 in every nibble; 3-bit values as one LSB-first bit stream.
TEST(Gptq, PacksTheDocumentedLayout) {
  at::Tensor codes = at::zeros({8, 8}, at::TensorOptions().dtype(c10::kLong));
  for (int64_t i = 0; i < 8; ++i) codes.select(1, i).fill_(i);  // W[c, i] has code i
  at::Tensor g_idx = at::zeros({8}, at::TensorOptions().dtype(c10::kLong));
  auto w = model::pack_gptq(codes, at::ones({1, 8}), at::Tensor(), g_idx, {4, -1});
  auto sd = as_map(w->state_dict("p."));
  EXPECT_EQ(sd.at("p.qweight").sizes(), at::IntArrayRef({1, 8}));
  EXPECT_EQ(static_cast<uint32_t>(sd.at("p.qweight")[0][0].item<int32_t>()), 0x76543210u);
  EXPECT_EQ(sd.at("p.qzeros")[0][0].item<int32_t>(), 0x77777777);
  EXPECT_EQ(sd.at("p.scales").scalar_type(), c10::kHalf);
  // 3 bits: 32 input channels with codes j % 8 fill three words.
  at::Tensor c3 = at::zeros({32, 32}, at::TensorOptions().dtype(c10::kLong));
  for (int64_t i = 0; i < 32; ++i) c3.select(1, i).fill_(i % 8);
  auto w3 = model::pack_gptq(c3, at::ones({1, 32}), at::Tensor(), at::zeros({32}, c10::kLong), {3, -1});
  at::Tensor q3 = as_map(w3->state_dict("p.")).at("p.qweight");
  EXPECT_EQ(q3.sizes(), at::IntArrayRef({3, 32}));
  uint64_t stream[2] = {0, 0};  // expected 96-bit stream: value j at bits 3j
  for (int j = 0; j < 32; ++j) {
    const int bit = 3 * j;
    const uint64_t v = static_cast<uint64_t>(j % 8);
    stream[bit / 64] |= v << (bit % 64);
    if (bit % 64 > 61) stream[1] |= v >> (64 - bit % 64);
  }
  EXPECT_EQ(static_cast<uint32_t>(q3[0][0].item<int32_t>()), static_cast<uint32_t>(stream[0]));
  EXPECT_EQ(static_cast<uint32_t>(q3[1][0].item<int32_t>()), static_cast<uint32_t>(stream[0] >> 32));
  EXPECT_EQ(static_cast<uint32_t>(q3[2][0].item<int32_t>()), static_cast<uint32_t>(stream[1]));
}

// gptq_v2 keeps asymmetric zero points as they are (v1 would store zero - 1 and cannot hold
// a zero of 0); an act-order g_idx (groups scattered over the input) is honoured by the
// loader and the product.
TEST(Gptq, V2ZerosAndActOrderGroupIndex) {
  at::Tensor codes = at::zeros({8, 16}, at::TensorOptions().dtype(c10::kLong));
  at::Tensor zeros = at::zeros({2, 8}, at::TensorOptions().dtype(c10::kLong));
  zeros[1].fill_(15);
  auto v2 = model::pack_gptq(codes, at::ones({2, 8}), zeros, at::arange(16, at::TensorOptions().dtype(c10::kLong)).div(8, "floor"),
                             {4, 8, false});
  auto sd = as_map(v2->state_dict("p."));
  EXPECT_EQ(v2->checkpoint_format(), "gptq_v2");
  EXPECT_EQ(sd.at("p.qzeros")[0][0].item<int32_t>(), 0);
  EXPECT_EQ(static_cast<uint32_t>(sd.at("p.qzeros")[1][0].item<int32_t>()), 0xFFFFFFFFu);
  EXPECT_TRUE(at::equal(reload(*v2, 8, 16)->dequantize(), v2->dequantize()));
  // Act-order: input column i in group (i * 5) % 4, as a desc_act checkpoint may have it.
  at::manual_seed(9);
  at::Tensor c = at::randint(0, 16, {64, 64}, at::TensorOptions().dtype(c10::kLong));
  at::Tensor g_idx = (at::arange(64, at::TensorOptions().dtype(c10::kLong)) * 5).remainder(4);
  at::Tensor scales = at::randn({4, 64}).abs() + 0.1;
  auto act = model::pack_gptq(c, scales, at::Tensor(), g_idx, {4, 16});
  auto back = reload(*act, 64, 64);
  at::Tensor want = (scales.to(c10::kHalf).to(c10::kFloat).index_select(0, g_idx).t() * (c.to(c10::kFloat) - 8));
  EXPECT_TRUE(at::equal(back->dequantize(), want));
  at::Tensor x = at::randn({5, 64});
  EXPECT_TRUE(at::allclose(back->matmul(x), at::matmul(x, want.t()), 1e-4, 1e-3));
}

// AutoAWQ GEMM (docs/formats.md §7): eight output channels per word along the output, nibble k
// holding channel kOrder[k] = 0,2,4,6,1,3,5,7; zero points as they are; scales [groups, out].
TEST(Awq, PacksTheDocumentedLayout) {
  at::Tensor codes = at::zeros({8, 4}, at::TensorOptions().dtype(c10::kLong));
  for (int64_t o = 0; o < 8; ++o) codes[o].fill_(o);  // output channel o has code o
  at::Tensor zeros = at::full({1, 8}, 3, at::TensorOptions().dtype(c10::kLong));
  auto w = model::pack_awq(codes, at::ones({1, 8}), zeros, 4);
  auto sd = as_map(w->state_dict("p."));
  EXPECT_EQ(sd.at("p.qweight").sizes(), at::IntArrayRef({4, 1}));
  EXPECT_EQ(static_cast<uint32_t>(sd.at("p.qweight")[0][0].item<int32_t>()), 0x75316420u);
  EXPECT_EQ(static_cast<uint32_t>(sd.at("p.qzeros")[0][0].item<int32_t>()), 0x33333333u);
  EXPECT_EQ(sd.at("p.scales").scalar_type(), c10::kHalf);
  EXPECT_FALSE(sd.count("p.g_idx"));
  at::Tensor want = (codes.to(c10::kFloat) - 3);
  EXPECT_TRUE(at::equal(w->dequantize(), want));
  // AWQ's quantizer uses the group's own range: an all-positive group gets zero 0.
  auto pos = model::quantize_awq_rtn(at::full({8, 16}, 2.0).add_(at::arange(16).to(c10::kFloat)), 16);
  EXPECT_EQ(as_map(pos->state_dict("p.")).at("p.qzeros")[0][0].item<int32_t>(), 0);
  EXPECT_THROW(model::quantize_awq_rtn(at::randn({12, 16}), 16), UsageError);  // 12 outputs: not a multiple of 8
}

TEST(Gptq, RtnErrorBudgetsAndWidths) {
  at::manual_seed(5);
  at::Tensor w = at::randn({128, 256});
  // Relative error budgets for symmetric RTN, group 128: 8 bits <= 0.01, 4 <= 0.13, 3 <= 0.3, 2 <= 0.7.
  const std::map<int64_t, double> budget = {{8, 0.01}, {4, 0.13}, {3, 0.3}, {2, 0.7}};
  for (const auto& [bits, b] : budget) EXPECT_LT(rel_error(w, model::quantize_rtn_gptq(w, {bits, 128})->dequantize()), b) << bits;
  EXPECT_THROW(model::quantize_rtn_gptq(at::randn({16, 20}), {3, -1}), UsageError);  // 3-bit needs multiples of 32
  EXPECT_THROW(model::quantize_rtn_gptq(w, {4, 100}), UsageError);                   // group must divide 256
  EXPECT_THROW(model::quantize_rtn_gptq(w, {5, 128}), UsageError);
}

// The quantize driver: a complete model directory that llmc loads back packed.
TEST(Quantize, WritesALoadableModelDirectory) {
  test::TempDir tmp;
  auto ctx = test::cpu_context();
  quant::QuantizeOptions o;
  o.model_name_or_path = test::fixture("opt_postln_f16_bin");
  o.output_dir = tmp / "nf4";
  o.blocksize = 32;
  auto identity = [](const nlohmann::json& j) { return j; };
  const auto m = quant::run_quantize(o, ctx, identity);
  EXPECT_EQ(m["quantized_linears"].get<int64_t>(), 12);
  EXPECT_LT(m["max_relative_error"].get<double>(), 0.12);
  const auto config = io::read_json_file(tmp / "nf4/config.json");
  const auto& qc = config["quantization_config"];
  EXPECT_EQ(qc["quant_method"], "bitsandbytes");
  EXPECT_EQ(qc["bnb_4bit_quant_type"], "nf4");
  EXPECT_EQ(qc["load_in_4bit"], true);
  EXPECT_EQ(qc["llm_int8_skip_modules"],
            nlohmann::json({"lm_head", "model.decoder.project_in", "model.decoder.project_out"}));
  auto st = io::SafetensorsFile::open(tmp / "nf4/model.safetensors");
  EXPECT_EQ(st.metadata().at("format"), "pt");
  EXPECT_FALSE(st.contains("lm_head.weight"));
  EXPECT_EQ(st.tensor("model.decoder.embed_tokens.weight").scalar_type(), c10::kHalf);
  EXPECT_EQ(st.tensor("model.decoder.layers.0.fc1.weight").sizes(), at::IntArrayRef({64 * 32 / 2, 1}));
  EXPECT_TRUE(st.contains("model.decoder.layers.1.self_attn.q_proj.weight.quant_state.bitsandbytes__nf4"));
  for (const char* f : {"vocab.json", "merges.txt", "tokenizer_config.json", "generation_config.json", "metrics.json"}) {
    EXPECT_TRUE(std::filesystem::exists(tmp / (std::string("nf4/") + f))) << f;
  }
  EXPECT_FALSE(std::filesystem::exists(tmp / "nf4/.spill.tmp"));  // only model files
  auto lm = model::load_causal_lm(tmp / "nf4", ctx);
  EXPECT_EQ(lm->packed_weights().size(), 12u);
  {
    // The float16 embedding / lm_head and the packed linears give the same logits through
    // the tiled path (full forward) and the matrix-vector path (KV-cache decode), 1e-4.
    c10::InferenceMode guard;
    at::Tensor ids = at::tensor(std::vector<int64_t>{464, 2068, 7586, 21831, 18045, 625, 262, 16931}).unsqueeze(0);
    at::Tensor full = lm->forward(ids, at::ones_like(ids), nullptr);
    model::KVCache cache;
    std::vector<at::Tensor> steps;
    for (int64_t t = 0; t < ids.size(1); ++t) {
      steps.push_back(lm->forward(ids.slice(1, t, t + 1), at::ones({1, t + 1}, c10::kLong), &cache));
    }
    EXPECT_TRUE(at::allclose(at::cat(steps, 1), full, 1e-4, 1e-4));
    EXPECT_EQ(full.scalar_type(), c10::kFloat);
    for (const auto& [name, p] : lm->named_parameters()) {
      if (name == "lm_head.weight") EXPECT_EQ(p.scalar_type(), c10::kHalf);  // kept 16-bit
    }
  }
  // Quantizing again is refused; so are bad combinations.
  o.model_name_or_path = tmp / "nf4";
  o.output_dir = tmp / "again";
  test::expect_error<UsageError>([&] { quant::run_quantize(o, ctx, identity); }, "already quantized");
  o.quantization_bits = 3;
  test::expect_error<UsageError>([&] { quant::validate(o); }, "4 bits (nf4, fp4) or 8 bits");
  o.quantization_bits = 4;
  o.blocksize = 48;
  test::expect_error<UsageError>([&] { quant::validate(o); }, "power of two from 32 to 4096");
  o.quantization_method = "hqq";
  test::expect_error<UsageError>([&] { quant::validate(o); }, "supported: awq, bitsandbytes, gptq, rtn");
}

namespace {

// y = W x through the decode path's vec_* product of a packed weight (all units, split in
// three shares as threads would take them).
at::Tensor vec_product(const model::PackedWeight& w, const at::Tensor& x) {
  std::vector<float> scratch(static_cast<size_t>(w.vec_scratch_floats()));
  at::Tensor xc = x.contiguous();
  at::Tensor y = at::zeros({w.out_features()});
  w.vec_prepare(xc.data_ptr<float>(), scratch.data());
  const int64_t u = w.vec_units();
  for (int part = 0; part < 3; ++part) {
    w.vec_compute(xc.data_ptr<float>(), scratch.data(), u * part / 3, u * (part + 1) / 3, y.data_ptr<float>());
  }
  return y;
}

}  // namespace

// Every packed format's one-row product equals dequantize() x (float32 sums in another order:
// relative 1e-5 of |W| |x|), at every GPTQ width, with and without zero points, and with an
// act-order g_idx that is not one group per group_size inputs.
TEST(VecProducts, EqualTheDequantizedProduct) {
  c10::InferenceMode guard;
  at::manual_seed(7);
  const at::Tensor w = at::randn({96, 256});
  const at::Tensor x = at::randn({256});
  std::vector<std::pair<std::string, std::shared_ptr<model::PackedWeight>>> cases = {
      {"nf4", model::quantize_bnb4(w, bnb("nf4", false))},
      {"nf4 double quant", model::quantize_bnb4(w, bnb("nf4", true, 128))},
      {"fp4", model::quantize_bnb4(w, bnb("fp4", true, 32))},
      {"int8", model::quantize_int8(w)},
      {"awq", model::quantize_awq_rtn(w, 64)},
  };
  for (int64_t bits : {2, 3, 4, 8}) {
    for (bool sym : {true, false}) {
      for (int64_t g : {int64_t{32}, int64_t{-1}}) {
        cases.emplace_back("gptq " + std::to_string(bits) + (sym ? " sym" : " asym") + " g" + std::to_string(g),
                           model::quantize_rtn_gptq(w, {bits, g, sym}));
      }
    }
  }
  // Groups in a shuffled order (act-order without static groups).
  at::Tensor codes = at::randint(0, 16, {96, 256}, at::TensorOptions().dtype(c10::kLong));
  at::Tensor scales = at::rand({8, 96}) * 0.1 + 0.01;
  at::Tensor g_idx = at::arange(256, at::TensorOptions().dtype(c10::kLong)).div(32, "floor").index_select(0, at::randperm(256)).to(c10::kInt);
  cases.emplace_back("gptq shuffled g_idx", model::pack_gptq(codes, scales, at::Tensor(), g_idx, {4, 32, true}));
  for (const auto& [name, q] : cases) {
    ASSERT_GT(q->vec_units(), 0) << name;
    const at::Tensor want = at::matmul(q->dequantize(), x);
    const double bound = 1e-5 * (q->dequantize().abs().sum(1) * x.abs().max()).max().item<double>();
    EXPECT_LT((vec_product(*q, x) - want).abs().max().item<double>(), bound) << name;
  }
  // A block that crosses rows has no one-row product (the decode path falls back).
  EXPECT_EQ(model::quantize_bnb4(at::randn({4, 48}), bnb("nf4", false, 64))->vec_units(), 0);
}
