#include <ATen/TensorOperators.h>
#include <ATen/Context.h>
#include <ATen/ops/linspace.h>
#include <ATen/ops/randint.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/ones.h>
#include <gtest/gtest.h>
#include <sys/resource.h>

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

// ---------------------------------------------------------------------------------------
// evaluate --compare_to, --save_logits, --tasks

#include <ATen/ops/cat.h>
#include <ATen/ops/full.h>
#include <ATen/ops/log_softmax.h>
#include <ATen/ops/ones_like.h>
#include <ATen/ops/tensor.h>
#include <c10/core/InferenceMode.h>

#include <cstring>
#include <fstream>

#include "llmc/eval/compare.h"
#include "llmc/eval/logits_file.h"
#include "llmc/eval/tasks.h"
#include "llmc/io/json_file.h"
#include "llmc/tokenizer/tokenizer.h"

namespace {

RunContext double_context() {
  RunContext ctx = test::cpu_context();
  ctx.dtype = c10::kDouble;
  return ctx;
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

// The protocol's windows over `ids`, each model run on each window alone, and the per-token
// figures computed with plain loops in float64 from the two models' logits.
struct Reference {
  std::vector<double> kl, dp;
  int64_t same{0};
  double nll{0}, nll_base{0};
};

Reference reference_compare(model::CausalLM& m, model::CausalLM& base, const std::vector<int64_t>& ids, int64_t window) {
  Reference r;
  c10::InferenceMode guard;
  for (size_t b = 0; b < ids.size(); b += static_cast<size_t>(window)) {
    const size_t e = std::min(ids.size(), b + static_cast<size_t>(window));
    if (e - b < 2) continue;
    std::vector<int64_t> w(ids.begin() + static_cast<std::ptrdiff_t>(b), ids.begin() + static_cast<std::ptrdiff_t>(e));
    const auto T = static_cast<int64_t>(w.size());
    const at::Tensor x = at::tensor(w, at::TensorOptions().dtype(c10::kLong)).unsqueeze(0);
    const at::Tensor mask = at::ones({1, T}, at::TensorOptions().dtype(c10::kLong));
    const at::Tensor lm = m.forward(x, mask, nullptr)[0].to(c10::kDouble).contiguous();
    const at::Tensor lb = base.forward(x, mask, nullptr)[0].to(c10::kDouble).contiguous();
    const int64_t V = lm.size(1);
    for (int64_t t = 0; t + 1 < T; ++t) {
      const double* a = lb.data_ptr<double>() + t * V;  // base
      const double* q = lm.data_ptr<double>() + t * V;  // model
      auto lse = [V](const double* v) {
        double mx = v[0];
        for (int64_t i = 1; i < V; ++i) mx = std::max(mx, v[i]);
        double s = 0;
        for (int64_t i = 0; i < V; ++i) s += std::exp(v[i] - mx);
        return mx + std::log(s);
      };
      const double la = lse(a), lq = lse(q);
      double kl = 0;
      int64_t arg_a = 0, arg_q = 0;
      for (int64_t i = 0; i < V; ++i) {
        kl += std::exp(a[i] - la) * ((a[i] - la) - (q[i] - lq));
        if (a[i] > a[arg_a]) arg_a = i;
        if (q[i] > q[arg_q]) arg_q = i;
      }
      const int64_t y = w[static_cast<size_t>(t + 1)];
      r.kl.push_back(kl);
      r.same += arg_a == arg_q ? 1 : 0;
      r.dp.push_back(std::exp(q[y] - lq) - std::exp(a[y] - la));
      r.nll -= q[y] - lq;
      r.nll_base -= a[y] - la;
    }
  }
  return r;
}

// Writes opt_preln_f32's log-probabilities over `text_file` in windows of 40 to tmp/base.logp;
// returns evaluate's metrics.
nlohmann::json save_base_logits(const test::TempDir& tmp, const std::string& text_file, const RunContext& ctx) {
  eval::EvaluateOptions save;
  save.model_name_or_path = fixture("opt_preln_f32");
  save.eval_file = text_file;
  save.max_length = 40;
  save.save_logits = tmp / "base.logp";
  return eval::run_evaluate(save, ctx);
}

// A short text keeps the saved file small (~40 predicted tokens: 4 MB, fast under the
// sanitizers); returns its path.
std::string short_text(const test::TempDir& tmp) {
  write_text(tmp / "short.txt", "A short text keeps the saved file small: forty-odd tokens are plenty for these checks.");
  return tmp / "short.txt";
}

}  // namespace

// Two different models in float64: every compare figure equals the plain-loop reference
// within 1e-9 (relative for KL and perplexities, absolute for rates).
TEST(Compare, MatchesAnIndependentFloat64Computation) {
  const RunContext ctx = double_context();
  eval::EvaluateOptions o;
  o.model_name_or_path = fixture("opt_postln_f16_bin");
  o.compare_to = fixture("opt_preln_f32");
  o.eval_file = fixture("eval.txt");
  o.max_length = 48;
  o.batch_size = 3;
  const nlohmann::json c = eval::run_evaluate(o, ctx)["compare"];

  auto m = model::load_causal_lm(fixture("opt_postln_f16_bin"), ctx);
  auto base = model::load_causal_lm(fixture("opt_preln_f32"), ctx);
  const auto ids = tokenizer::load_tokenizer(fixture("opt_preln_f32"))->encode(eval::read_eval_text(o.eval_file), true);
  const Reference r = reference_compare(*m, *base, ids, 48);
  const auto n = static_cast<double>(r.kl.size());
  ASSERT_EQ(c["predicted_tokens"].get<int64_t>(), static_cast<int64_t>(r.kl.size()));
  double kl_sum = 0, dp2 = 0;
  for (double v : r.kl) kl_sum += v;
  for (double v : r.dp) dp2 += v * v;
  auto rel = [](double a, double b) { return std::abs(a - b) / std::max(1e-300, std::abs(b)); };
  EXPECT_GT(kl_sum / n, 0.1);  // two unrelated random models: far apart
  EXPECT_LT(rel(c["kl_mean"], kl_sum / n), 1e-9);
  EXPECT_LT(rel(c["kl_median"], eval::percentile(r.kl, 0.5)), 1e-9);
  EXPECT_LT(rel(c["kl_p90"], eval::percentile(r.kl, 0.9)), 1e-9);
  EXPECT_LT(rel(c["kl_p99"], eval::percentile(r.kl, 0.99)), 1e-9);
  EXPECT_LT(rel(c["kl_max"], *std::max_element(r.kl.begin(), r.kl.end())), 1e-9);
  EXPECT_NEAR(c["top1_agreement"].get<double>(), static_cast<double>(r.same) / n, 1e-12);
  EXPECT_NEAR(c["delta_p_rms"].get<double>(), std::sqrt(dp2 / n), 1e-9);
  EXPECT_LT(rel(c["perplexity"], std::exp(r.nll / n)), 1e-9);
  EXPECT_LT(rel(c["base_perplexity"], std::exp(r.nll_base / n)), 1e-9);
  EXPECT_LT(rel(c["perplexity_ratio"], std::exp((r.nll - r.nll_base) / n)), 1e-9);
  EXPECT_EQ(c["base_kind"], "model");
  EXPECT_EQ(c["shared_vocab"], 50272);
}

// A model against itself: KL exactly 0 and agreement exactly 1, in float32.
TEST(Compare, SelfComparisonIsExactlyZero) {
  const RunContext ctx = test::cpu_context();
  eval::EvaluateOptions o;
  o.model_name_or_path = fixture("opt_preln_f32");
  o.compare_to = fixture("opt_preln_bin");  // the same weights from a torch checkpoint
  o.eval_file = fixture("eval.txt");
  o.batch_size = 2;
  const nlohmann::json c = eval::run_evaluate(o, ctx)["compare"];
  for (const char* k : {"kl_mean", "kl_mean_stderr", "kl_median", "kl_p90", "kl_p99", "kl_max", "delta_p_rms", "delta_p_mean"}) {
    EXPECT_EQ(c[k].get<double>(), 0.0) << k;
  }
  EXPECT_EQ(c["top1_agreement"].get<double>(), 1.0);
  EXPECT_EQ(c["perplexity_ratio"].get<double>(), 1.0);
}

// The saved-logits path against the two-model path: agreement exactly; Δp and the
// perplexities within 1e-6 relative (the file holds the base's float64 values, the two-model
// path computes them from float32 logits); KL through the 16-bit coding of the distribution,
// within 1e-3 relative. A model against its own file: KL below 1e-7.
TEST(Compare, SavedLogitsEqualTheTwoModelPath) {
  const RunContext ctx = test::cpu_context();
  test::TempDir tmp;
  const nlohmann::json s = save_base_logits(tmp, fixture("eval.txt"), ctx);
  const int64_t predicted = s["predicted_tokens"];
  EXPECT_EQ(s["saved_logits"]["bytes"].get<uint64_t>(),
            std::filesystem::file_size(tmp / "base.logp"));
  EXPECT_GT(s["saved_logits"]["bytes"].get<uint64_t>(), static_cast<uint64_t>(predicted) * eval::logits_record_bytes(50272));

  eval::EvaluateOptions two;
  two.model_name_or_path = fixture("opt_postln_f16_bin");
  two.compare_to = fixture("opt_preln_f32");
  two.eval_file = fixture("eval.txt");
  two.max_length = 40;
  two.batch_size = 2;
  const nlohmann::json a = eval::run_evaluate(two, ctx)["compare"];
  two.compare_to = tmp / "base.logp";
  two.eval_file.clear();  // the ids come from the file
  two.max_length = 0;
  const nlohmann::json b = eval::run_evaluate(two, ctx)["compare"];
  EXPECT_EQ(b["base_kind"], "logits_file");
  EXPECT_EQ(a["predicted_tokens"], b["predicted_tokens"]);
  EXPECT_EQ(a["top1_agreement"], b["top1_agreement"]);
  for (const char* k : {"perplexity", "base_perplexity", "perplexity_ratio", "delta_p_rms", "delta_p_mean"}) {
    EXPECT_NEAR(a[k].get<double>(), b[k].get<double>(), 1e-6 * std::max(1e-3, std::abs(a[k].get<double>()))) << k;
  }
  for (const char* k : {"kl_mean", "kl_median", "kl_p90", "kl_max"}) {
    EXPECT_NEAR(a[k].get<double>(), b[k].get<double>(), 1e-3 * a[k].get<double>()) << k;
  }
  two.model_name_or_path = fixture("opt_preln_f32");
  const nlohmann::json self = eval::run_evaluate(two, ctx)["compare"];
  EXPECT_LT(self["kl_mean"].get<double>(), 1e-7);
  EXPECT_EQ(self["top1_agreement"].get<double>(), 1.0);
}

TEST(Compare, RefusesMismatchedTextWindowsAndTokenizers) {
  const RunContext ctx = test::cpu_context();
  test::TempDir tmp;
  save_base_logits(tmp, short_text(tmp), ctx);
  eval::EvaluateOptions o;
  o.model_name_or_path = fixture("opt_preln_f32");
  o.compare_to = tmp / "base.logp";
  o.max_length = 32;
  test::expect_error<UsageError>([&] { eval::run_evaluate(o, ctx); }, "differs from the 40");
  o.max_length = 0;
  write_text(tmp / "other.txt", "Some other text entirely, not the one saved.");
  o.eval_file = tmp / "other.txt";
  test::expect_error<UsageError>([&] { eval::run_evaluate(o, ctx); }, "does not encode to the");
  o.eval_file.clear();
  // The same model with a SentencePiece tokenizer: its fingerprint differs from the file's.
  const std::string other = tmp / "other_tokenizer";
  std::filesystem::create_directory(other);
  for (const char* f : {"config.json", "model.safetensors"}) std::filesystem::copy(fixture("opt_preln_f32") + "/" + f, other + "/" + f);
  for (const char* f : {"tokenizer.model", "tokenizer_config.json"}) std::filesystem::copy(fixture("spm_model") + "/" + f, other + "/" + f);
  o.model_name_or_path = other;
  test::expect_error<UsageError>([&] { eval::run_evaluate(o, ctx); }, "share one tokenizer");
  eval::EvaluateOptions need;
  need.model_name_or_path = fixture("opt_preln_f32");
  need.compare_to = fixture("opt_preln_bin");
  test::expect_error<UsageError>([&] { eval::run_evaluate(need, ctx); }, "needs --eval_file");
}

// Files from strangers: every damaged header or record is exit 3 with where it went wrong.
TEST(Compare, RefusesDamagedLogitsFiles) {
  const RunContext ctx = test::cpu_context();
  test::TempDir tmp;
  save_base_logits(tmp, short_text(tmp), ctx);
  std::string good;
  {
    std::ifstream f(tmp / "base.logp", std::ios::binary);
    good.assign(std::istreambuf_iterator<char>(f), {});
  }
  uint32_t hlen;
  std::memcpy(&hlen, good.data() + 12, 4);
  const nlohmann::json header = nlohmann::json::parse(good.substr(16, hlen));
  const size_t ids_at = 16 + hlen, records_at = ids_at + 4 * header["num_tokens"].get<size_t>();
  auto variant = [&](const std::string& bytes, const std::string& needle) {
    write_text(tmp / "bad.logp", bytes);
    eval::EvaluateOptions o;
    o.model_name_or_path = fixture("opt_preln_f32");
    o.compare_to = tmp / "bad.logp";
    test::expect_error<InputError>([&] { eval::run_evaluate(o, ctx); }, needle);
  };
  auto with_header = [&](nlohmann::json h) {
    const std::string js = h.dump();
    std::string out = good.substr(0, 12);
    const auto n = static_cast<uint32_t>(js.size());
    out.append(reinterpret_cast<const char*>(&n), 4);
    return out + js + good.substr(ids_at);
  };
  variant(good.substr(0, good.size() - 1), "its header describes");
  variant(good + "x", "its header describes");
  variant(good.substr(0, 10), "too short");
  {
    std::string b = good;
    b[12] = '\xff';
    b[13] = '\xff';
    b[14] = '\xff';
    b[15] = '\x7f';
    variant(b, "does not fit");
  }
  {
    std::string b = good;
    b[8] = 2;
    variant(b, "version 2");
  }
  {
    nlohmann::json h = header;
    h["vocab_size"] = -5;
    variant(with_header(h), "vocab_size");
    h = header;
    h["num_tokens"] = "many";
    variant(with_header(h), "num_tokens");
    h = header;
    h["predicted_tokens"] = header["predicted_tokens"].get<int64_t>() + 1;
    variant(with_header(h), "does not follow");
    h = header;
    h["num_tokens"] = int64_t{1} << 35;
    h["predicted_tokens"] = eval::protocol_predicted_tokens(int64_t{1} << 35, 40);
    variant(with_header(h), "its header describes");
  }
  variant(good.substr(0, 16) + std::string(hlen, '[') + good.substr(ids_at), "header");
  {
    std::string b = good;
    const int32_t bad_id = 60000;
    std::memcpy(b.data() + ids_at + 8, &bad_id, 4);
    variant(b, "outside the vocabulary");
  }
  {
    std::string b = good;
    const double nan = std::nan("");
    std::memcpy(b.data() + records_at + 8, &nan, 8);  // the first record's step
    variant(b, "record 0");
  }
  {
    std::string b = good;
    const uint64_t rb = eval::logits_record_bytes(50272);
    std::memset(b.data() + records_at + rb + 28, 0, 2 * 50272);  // record 1: no id has mass
    variant(b, "no id");
  }
  std::filesystem::create_directory(tmp / "dir.logp");
  eval::EvaluateOptions o;
  o.model_name_or_path = fixture("opt_preln_f32");
  o.compare_to = tmp / "dir.logp";  // a directory is taken for a model directory
  EXPECT_THROW(eval::run_evaluate(o, ctx), Error);
}

// A reader that refuses a file closes it: more refusals than the process may hold open
// descriptors (the fuzzer ran out of them), then a good file still opens.
TEST(Compare, RefusedLogitsFilesLeaveNoDescriptorOpen) {
  test::TempDir tmp;
  write_text(tmp / "bad.logp", std::string("LLMCLOGP") + std::string(40, '\x01'));
  struct rlimit old {};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
  struct rlimit low = old;
  low.rlim_cur = std::min<rlim_t>(old.rlim_cur, 256);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  int refused = 0;
  for (int i = 0; i < 1000; ++i) {
    try {
      eval::LogitsFileReader r(tmp / "bad.logp");
    } catch (const InputError& e) {
      if (std::string(e.what()).find("Too many open files") == std::string::npos) ++refused;
    }
  }
  setrlimit(RLIMIT_NOFILE, &old);
  EXPECT_EQ(refused, 1000);
}

// The float32 comparison (vectorised exp, one pass per row) against the same rows in float64
// with std::exp: KL within 1e-6 absolute + 1e-6 relative, log-probabilities within 1e-6, the
// same top-1 decisions. Widths with and without a tail beyond 16 lanes, logits spread over
// 60 nats (ids far below the top), ties for the top (the first id wins, as torch.argmax), a
// model row with -inf where the base has mass (KL +inf), and a NaN row (NaN figures).
TEST(Compare, Float32KernelMatchesFloat64) {
  for (int64_t width : {int64_t{37}, int64_t{50272}, int64_t{1000}}) {
    const int64_t n = 24;
    at::manual_seed(width);
    at::Tensor base = at::randn({n, width}, at::TensorOptions().dtype(c10::kDouble)) * 6;
    at::Tensor model = base + at::randn({n, width}, at::TensorOptions().dtype(c10::kDouble)) * 0.5;
    base[3] = at::linspace(-60, 0, width, at::TensorOptions().dtype(c10::kDouble));
    model[5].fill_(1.0);  // every id tied: the top is id 0
    base[5].fill_(2.0);
    base[6][width - 1] = 100;  // a top in the tail beyond the lanes
    model[6][width - 1] = 100;
    base = base.to(c10::kFloat).to(c10::kDouble);  // values exactly representable in float32
    model = model.to(c10::kFloat).to(c10::kDouble);
    const at::Tensor targets = at::randint(0, width, {n}, at::TensorOptions().dtype(c10::kLong));
    eval::CompareAccumulator a32, a64;
    a32.add(model.to(c10::kFloat), eval::base_from_logits(base.to(c10::kFloat), width), targets);
    a64.add(model, eval::base_from_logits(base, width), targets);
    const nlohmann::json j32 = a32.summary(), j64 = a64.summary();
    for (const char* k : {"kl_mean", "kl_median", "kl_p90", "kl_max", "perplexity", "base_perplexity", "delta_p_rms"}) {
      const double want = j64[k].get<double>();
      EXPECT_NEAR(j32[k].get<double>(), want, 1e-6 + 1e-6 * std::abs(want)) << k << " width " << width;
    }
    EXPECT_EQ(j32["top1_agreement"], j64["top1_agreement"]) << width;
    EXPECT_GT(j64["kl_mean"].get<double>(), 0.01);
  }
  // -inf in the model where the base has mass; a row with NaN.
  at::Tensor base = at::zeros({2, 40});
  at::Tensor model = at::zeros({2, 40});
  model[0][7] = -std::numeric_limits<float>::infinity();
  model[1][9] = std::nanf("");
  const at::Tensor targets = at::zeros({2}, at::TensorOptions().dtype(c10::kLong));
  eval::CompareAccumulator one, two;
  one.add(model.slice(0, 0, 1), eval::base_from_logits(base.slice(0, 0, 1), 40), targets.slice(0, 0, 1));
  EXPECT_TRUE(std::isinf(one.summary()["kl_mean"].get<double>()));
  two.add(model.slice(0, 1, 2), eval::base_from_logits(base.slice(0, 1, 2), 40), targets.slice(0, 1, 2));
  EXPECT_TRUE(std::isnan(two.summary()["kl_mean"].get<double>()));
}

TEST(Compare, PercentileInterpolatesLinearly) {
  EXPECT_DOUBLE_EQ(eval::percentile({3, 1, 2, 4}, 0.5), 2.5);
  EXPECT_DOUBLE_EQ(eval::percentile({1, 2, 3, 4, 5}, 0.9), 4.6);
  EXPECT_DOUBLE_EQ(eval::percentile({7}, 0.99), 7);
  EXPECT_DOUBLE_EQ(eval::percentile({1, 9}, 1.0), 9);
}

// Task scores against the same log-likelihoods computed by hand from the model's logits.
TEST(Tasks, ScoreMultipleChoiceAndClozeAsTheHarness) {
  const RunContext ctx = test::cpu_context();
  test::TempDir tmp;
  auto m = model::load_causal_lm(fixture("opt_preln_f32"), ctx);
  auto tok = tokenizer::load_tokenizer(fixture("opt_preln_f32"));
  // log P(continuation | context) by one forward over BOS + context + continuation.
  auto loglik = [&](const std::string& context, const std::string& cont, bool* greedy) {
    const auto c = tok->encode(context, true);
    const auto w = tok->encode(context + cont, true);
    c10::InferenceMode g;
    const at::Tensor x = at::tensor(w, at::TensorOptions().dtype(c10::kLong)).unsqueeze(0);
    const at::Tensor lp = at::log_softmax(m->forward(x, at::ones_like(x), nullptr)[0].to(c10::kDouble), -1);
    double s = 0;
    bool all = true;
    for (size_t t = c.size(); t < w.size(); ++t) {
      s += lp[static_cast<int64_t>(t - 1)][w[t]].item<double>();
      all = all && lp[static_cast<int64_t>(t - 1)].argmax().item<int64_t>() == w[t];
    }
    if (greedy != nullptr) *greedy = all;
    return s;
  };
  const std::vector<std::tuple<std::string, std::vector<std::string>, int>> mc = {
      {"The capital of France is", {" Paris", " a large blue elephant", " Rome"}, 0},
      {"Two plus two equals", {" four", " five"}, 1},
      {"She opened the door and", {" walked in.", " sat", " ran away quickly", " smiled"}, 3},
  };
  std::string lines;
  int want = 0, want_norm = 0;
  for (const auto& [ctx_text, choices, gold] : mc) {
    nlohmann::json j{{"context", ctx_text}, {"choices", choices}, {"gold", gold}};
    lines += j.dump() + "\n";
    size_t best = 0, best_norm = 0;
    std::vector<double> ll;
    for (const auto& ch : choices) ll.push_back(loglik(ctx_text, ch, nullptr));
    for (size_t i = 1; i < ll.size(); ++i) {
      if (ll[i] > ll[best]) best = i;
      if (ll[i] / static_cast<double>(choices[i].size()) > ll[best_norm] / static_cast<double>(choices[best_norm].size())) best_norm = i;
    }
    want += static_cast<int>(best) == gold;
    want_norm += static_cast<int>(best_norm) == gold;
  }
  write_text(tmp / "mc.jsonl", lines + "\n");
  const eval::Task t = eval::read_task_file(tmp / "mc.jsonl", 0);
  EXPECT_EQ(t.name, "mc");
  for (int64_t batch : {1, 2, 8}) {
    const nlohmann::json r = eval::score_task(*m, *tok, t, batch, ctx);
    EXPECT_EQ(r["type"], "multiple_choice");
    EXPECT_EQ(r["examples"], 3);
    EXPECT_DOUBLE_EQ(r["acc"].get<double>(), want / 3.0) << batch;
    EXPECT_DOUBLE_EQ(r["acc_norm"].get<double>(), want_norm / 3.0) << batch;
  }
  // Cloze: target perplexity is exp(−mean summed log-likelihood), as the harness's lambada.
  const std::vector<std::pair<std::string, std::string>> cz = {{"He went to the", " store"}, {"I like", " it"}, {"The end of the", " story"}};
  lines.clear();
  double ll_sum = 0;
  int greedy_count = 0;
  for (const auto& [c, target] : cz) {
    lines += nlohmann::json{{"context", c}, {"target", target}}.dump() + "\n";
    bool g = false;
    ll_sum += loglik(c, target, &g);
    greedy_count += g;
  }
  write_text(tmp / "cloze.jsonl", lines);
  const nlohmann::json r = eval::score_task(*m, *tok, eval::read_task_file(tmp / "cloze.jsonl", 0), 2, ctx);
  EXPECT_EQ(r["type"], "cloze");
  EXPECT_DOUBLE_EQ(r["acc"].get<double>(), greedy_count / 3.0);
  EXPECT_NEAR(r["target_perplexity"].get<double>() / std::exp(-ll_sum / 3.0), 1.0, 1e-5);
  EXPECT_EQ(eval::read_task_file(tmp / "cloze.jsonl", 2).examples.size(), 2u);  // --limit
}

TEST(Tasks, RefusesMalformedExamples) {
  test::TempDir tmp;
  auto bad = [&](const std::string& line, const std::string& needle) {
    write_text(tmp / "t.jsonl", line);
    test::expect_error<InputError>([&] { eval::read_task_file(tmp / "t.jsonl", 0); }, needle);
  };
  bad("", "no example");
  bad("[1,2]\n", "expected a JSON object");
  bad("{\"context\": \"a\"}\n", "either 'choices'");
  bad("{\"context\": \"a\", \"choices\": [\"x\", \"y\"], \"target\": \"z\"}\n", "either 'choices'");
  bad("{\"context\": \"a\", \"choices\": [\"x\"], \"gold\": 0}\n", "'choices' must be");
  bad("{\"context\": \"a\", \"choices\": [\"x\", \"y\"], \"gold\": 2}\n", "'gold' must be");
  bad("{\"context\": \"a\", \"choices\": [\"x\", 3], \"gold\": 0}\n", "every choice");
  bad("{\"context\": 5, \"target\": \"z\"}\n", "'context' must be a string");
  bad("{\"context\": \"a\", \"target\": \"\"}\n", "'target' is empty");
  bad("{\"context\": \"a\", \"target\": \"z\"}\n{\"context\": \"a\", \"choices\": [\"x\", \"y\"], \"gold\": 0}\n", "mixes");
  bad("{\"context\": \"a\", \"target\": \"z\"\n", "t.jsonl:1");
  EXPECT_THROW(eval::split_task_list("a.jsonl,,b.jsonl"), UsageError);
  EXPECT_EQ(eval::split_task_list("a.jsonl,b.jsonl").size(), 2u);
}

// A base whose vocab_size has 8 more padding rows: compared over the 50272 shared ids, equal
// to the comparison with the unpadded model (1e-6 relative: the wider lm_head product rounds
// differently in float32).
TEST(Compare, PaddedVocabularyComparesOverTheSharedIds) {
  const RunContext ctx = test::cpu_context();
  test::TempDir tmp;
  const std::string padded = tmp / "padded";
  std::filesystem::copy(fixture("opt_preln_f32"), padded);
  std::filesystem::remove(padded + "/model.safetensors");
  auto sd = io::SafetensorsFile::open(fixture("opt_preln_f32") + "/model.safetensors").load_all();
  for (auto& [name, t] : sd) {
    if (name.find("embed_tokens") != std::string::npos || name == "lm_head.weight") {
      t = at::cat({t, at::full({8, t.size(1)}, 0.0, t.options())}, 0);
    }
  }
  io::save_safetensors(padded + "/model.safetensors", sd);
  nlohmann::json cfg = io::read_json_file(padded + "/config.json");
  cfg["vocab_size"] = 50280;
  io::write_file_atomic(padded + "/config.json", cfg.dump());
  eval::EvaluateOptions o;
  o.model_name_or_path = fixture("opt_postln_f16_bin");
  o.eval_file = fixture("eval.txt");
  o.compare_to = fixture("opt_preln_f32");
  const nlohmann::json a = eval::run_evaluate(o, ctx)["compare"];
  o.compare_to = padded;
  const nlohmann::json b = eval::run_evaluate(o, ctx)["compare"];
  EXPECT_EQ(b["shared_vocab"], 50272);
  EXPECT_EQ(a["top1_agreement"], b["top1_agreement"]);
  for (const char* k : {"kl_mean", "kl_max", "perplexity_ratio"}) EXPECT_NEAR(a[k].get<double>(), b[k].get<double>(), 1e-6 * a[k].get<double>()) << k;
}
