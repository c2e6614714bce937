#include "llmc/prune/prune.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/TensorOperators.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/rand.h>
#include <ATen/ops/randint.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <c10/core/InferenceMode.h>
#include <ATen/ops/tensor.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>

#include "llmc/core/error.h"
#include "llmc/core/logging.h"
#include "llmc/core/progress.h"
#include "llmc/core/registry.h"
#include "llmc/eval/perplexity.h"
#include "llmc/eval/evaluate.h"
#include "llmc/io/hf_model_dir.h"
#include "llmc/io/json_fields.h"
#include "llmc/io/json_file.h"
#include "llmc/io/model_dir_writer.h"
#include "llmc/io/safetensors.h"
#include "llmc/model/causal_lm.h"
#include "llmc/calib/calibration.h"
#include "llmc/model/opt_config.h"
#include "llmc/model/packed_weight.h"
#include "llmc/model/weight_count.h"
#include "llmc/prune/masks.h"
#include "sparsegpt.h"
#include "llmc/tokenizer/tokenizer.h"

namespace llmc::prune {

namespace fs = std::filesystem;

namespace {

// ---------------------------------------------------------------- methods (a registry)

// What a Linear's pruning asks for: unstructured (a fraction per Linear or per row) or N:M.
struct Sparsity {
  double ratio{0.0};
  int64_t keep_n{0}, group_m{0};  // N:M when group_m > 0
  double damp_percent{0.01};
};

struct Method {
  bool needs_calibration{false};
  calib::Collect collect;  // the statistics it reads (the Hessian is always gathered)
  // Importance of each weight of a Linear ([out, in]) for one threshold over the whole model
  // (--scope global); null when the method does not rank weights globally.
  std::function<at::Tensor(const at::Tensor& w, const calib::LinearStats* stats, at::Generator& gen)> weight_scores;
  // Prunes one Linear (float32 [out, in]); null when the method does not prune single weights.
  std::function<at::Tensor(const at::Tensor& w, const calib::LinearStats* stats, const Sparsity& sp, at::Generator& gen)>
      prune_linear;
  // Importance of each FFN neuron j from fc1 row j (+ bias j), fc2 column j and fc2's input
  // statistics; null when the method does not rank neurons.
  std::function<at::Tensor(const at::Tensor& fc1_w, const at::Tensor& fc1_b, const at::Tensor& fc2_w,
                           const calib::LinearStats* fc2_stats, at::Generator& gen)>
      neuron_scores;
};

at::Tensor random_like(const at::Tensor& t, at::Generator& gen) { return at::rand(t.sizes(), gen, t.options()); }

at::Tensor magnitude_weights(const at::Tensor& w, const calib::LinearStats*, at::Generator&) { return w.abs(); }
at::Tensor random_weights(const at::Tensor& w, const calib::LinearStats*, at::Generator& gen) { return random_like(w, gen); }
// Wanda: |W_ij| * ||X_j||_2 over the calibration tokens.
at::Tensor wanda_weights(const at::Tensor& w, const calib::LinearStats* s, at::Generator&) {
  return w.abs() * s->sum_sq.sqrt().to(c10::kFloat).unsqueeze(0);
}
at::Tensor magnitude_neurons(const at::Tensor& f1, const at::Tensor& b1, const at::Tensor& f2, const calib::LinearStats*,
                             at::Generator&) {
  at::Tensor sq = f1.pow(2).sum(1) + f2.pow(2).sum(0);
  if (b1.defined()) sq = sq + b1.pow(2);
  return sq.sqrt();  // L2 norm of the neuron's weights
}
at::Tensor random_neurons(const at::Tensor& f1, const at::Tensor&, const at::Tensor&, const calib::LinearStats*,
                          at::Generator& gen) {
  return at::rand({f1.size(0)}, gen, f1.options());
}
// Mean |activation| of each neuron (fc2's input) over the calibration tokens.
at::Tensor activation_neurons(const at::Tensor&, const at::Tensor&, const at::Tensor&, const calib::LinearStats* s,
                              at::Generator&) {
  return s->mean_abs();
}

// A method that ranks weights: the mask keeps the highest scores (per row when `per_row`,
// else over the Linear; N:M per group of M inputs).
template <class Scores>
auto by_scores(Scores scores, bool per_row) {
  return [scores, per_row](const at::Tensor& w, const calib::LinearStats* st, const Sparsity& sp, at::Generator& gen) {
    const at::Tensor sc = scores(w, st, gen);
    at::Tensor keep;
    if (sp.group_m > 0) {
      keep = n_of_m_mask(sc, sp.keep_n, sp.group_m);
    } else if (per_row) {
      keep = lowest_fraction_mask_per_row(sc, sp.ratio);
    } else {
      keep = lowest_fraction_mask(sc, sp.ratio);
    }
    return w * keep;
  };
}

// SparseGPT: the OBS-updated weights with its own block-wise mask.
at::Tensor sparsegpt_linear(const at::Tensor& w, const calib::LinearStats* st, const Sparsity& sp, at::Generator&) {
  SparseGptSettings s;
  s.sparsity = sp.ratio;
  s.keep_n = sp.keep_n;
  s.group_m = sp.group_m;
  s.damp_percent = sp.damp_percent;
  SparseGptResult r = sparsegpt_prune(w, st->hessian, s);
  if (r.damp_retries > 0) log_warn("SparseGPT: dampening raised to " + std::to_string(r.damp_used) + " to invert a Hessian");
  return r.weight;
}

calib::Collect collecting(bool sum_sq, bool sum_abs) {
  calib::Collect c;
  c.sum_sq = sum_sq;
  c.sum_abs = sum_abs;
  return c;
}

const Registry<Method>& method_registry() {
  static const Registry<Method> registry = [] {
    Registry<Method> r("pruning method");
    r.add("magnitude", Method{false, {}, magnitude_weights, by_scores(magnitude_weights, false), magnitude_neurons});
    r.add("random", Method{false, {}, random_weights, by_scores(random_weights, false), random_neurons});
    r.add("wanda", Method{true, collecting(true, false), nullptr, by_scores(wanda_weights, true), nullptr});
    r.add("activation", Method{true, collecting(false, true), nullptr, nullptr, activation_neurons});
    r.add("sparsegpt", Method{true, {}, nullptr, sparsegpt_linear, nullptr});
    return r;
  }();
  return registry;
}

std::pair<int64_t, int64_t> parse_pattern(const std::string& p) {
  const auto colon = p.find(':');
  try {
    if (colon != std::string::npos) {
      const int64_t n = std::stoll(p.substr(0, colon)), m = std::stoll(p.substr(colon + 1));
      if (n >= 1 && m >= 2 && n < m && m <= 64) return {n, m};
    }
  } catch (const std::exception&) {
  }
  throw UsageError("--sparsity_pattern: expected N:M with 1 <= N < M (e.g. 2:4, 4:8), found '" + p + "'");
}

// A decoder-layer Linear as read from the checkpoint: dense float32 weight plus, for a
// quantized input, the packed form whose settings the output keeps.
struct LinearSlot {
  std::string prefix;  // "model.decoder.layers.3.fc1."
  at::Tensor weight;   // float32 [out, in]
  std::shared_ptr<model::PackedWeight> packed;
  c10::ScalarType dense_dtype{c10::kHalf};
};

const char* kLinears[] = {"self_attn.k_proj", "self_attn.v_proj", "self_attn.q_proj", "self_attn.out_proj", "fc1", "fc2"};


// The checkpoint keys a Linear's weight occupies: the weight and every packed piece (absmax,
// SCB, qweight, ...) under its prefix, but not its bias.
std::set<std::string> linear_weight_keys(const io::StateDict& raw, const std::vector<LinearSlot>& slots) {
  std::set<std::string> keys;
  for (const auto& s : slots) {
    for (auto it = raw.lower_bound(s.prefix); it != raw.end() && it->first.rfind(s.prefix, 0) == 0; ++it) {
      if (it->first != s.prefix + "bias") keys.insert(it->first);
    }
  }
  return keys;
}

// Bytes a Linear's weight takes in memory: packed, or dense in its own dtype.
int64_t weight_bytes(const at::Tensor& w, const model::PackedWeight* packed, c10::ScalarType dense_dtype) {
  return packed ? packed->nbytes() : w.numel() * static_cast<int64_t>(c10::elementSize(dense_dtype));
}

double perplexity_of(const std::string& dir, const std::string& eval_file, int64_t max_length, const RunContext& ctx) {
  const std::string text = eval::read_eval_text(eval_file);
  auto lm = model::load_causal_lm(dir, ctx);
  auto tok = tokenizer::load_tokenizer(dir);
  return eval::perplexity(*lm, tok->encode(text, true), max_length, 1, ctx).perplexity;
}

// Sum of |x| per feature of a [..., n] tensor, in float64 on the CPU.
at::Tensor abs_sum(const at::Tensor& x) { return x.reshape({-1, x.size(-1)}).to(c10::kCPU, c10::kDouble).abs().sum(0); }

// Activation importance for hidden-width pruning, from one unpruned pass over the
// calibration data: mean |value| of each residual channel over every layer's input, and of
// each attention dim (out_proj's input) per layer.
struct HiddenActivations {
  at::Tensor residual;              // [H]
  std::vector<at::Tensor> attention;  // per layer [H]
};

HiddenActivations hidden_activations(const std::string& dir, const PruneOptions& o, const RunContext& ctx,
                                     at::Generator& gen) {
  auto lm = model::load_causal_lm(dir, ctx);
  const int64_t T = calib::sample_length(o.calibration, lm->info().max_positions);
  calib::LayerDriver driver(*lm, calib::calibration_ids(o.calibration, dir, T), o.calibration.num_calibration_samples, T, gen);
  HiddenActivations a;
  c10::InferenceMode guard;
  for (int64_t i = 0; i < driver.num_layers(); ++i) {
    for (const auto& h : driver.inputs()) a.residual = a.residual.defined() ? a.residual + abs_sum(h) : abs_sum(h);
    at::Tensor attn;
    const std::string out_proj = "model.decoder.layers." + std::to_string(i) + ".self_attn.out_proj";
    driver.observe([&](const std::string& name, const at::Tensor& x) {
      if (name == out_proj) attn = attn.defined() ? attn + abs_sum(x) : abs_sum(x);
    });
    a.attention.push_back(attn.to(c10::kFloat));
    driver.advance();
  }
  a.residual = a.residual.to(c10::kFloat);
  return a;
}

// Alignment of pruned widths that packed inputs need: 8, 32 for 3-bit rtn, and the rtn group.
int64_t packed_alignment(const std::vector<LinearSlot>& slots, const nlohmann::json& config) {
  int64_t align = 8;
  for (const auto& s : slots) {
    if (s.packed && s.packed->format() == "gptq") {
      const nlohmann::json qc = io::json_field<nlohmann::json>(config, "quantization_config", nlohmann::json::object(), "config.json");
      const int64_t bits = io::json_field<int64_t>(qc, "bits", 4, "config.json", "quantization_config");
      const int64_t group = io::json_field<int64_t>(qc, "group_size", 128, "config.json", "quantization_config");
      align = std::lcm(align, bits == 3 ? int64_t{32} : int64_t{8});
      if (group > 0) align = std::lcm(align, group);
      break;
    }
  }
  return align;
}

// Shrinks hidden_size. OPT ties two widths to it: the residual stream (embeddings and
// positions without a projection, every LayerNorm, the inputs of q/k/v/fc1/project_out, the
// outputs of out_proj/fc2/project_in) and the attention width (outputs of q/k/v, inputs of
// out_proj). The same number of residual channels and of dims in every head go; q_proj
// absorbs the change of the attention scale so that kept attention logits are unchanged.
void prune_hidden_width(const PruneOptions& o, const model::OptConfig& cfg, std::vector<LinearSlot>& slots,
                        const io::StateDict& raw, std::map<std::string, at::Tensor>& narrowed, nlohmann::json& config,
                        at::Generator& gen, const HiddenActivations* acts) {
  const int64_t H = cfg.hidden_size, nh = cfg.num_attention_heads, hd = H / nh;
  const int64_t align = std::lcm(packed_alignment(slots, config), nh);
  const int64_t H2 = static_cast<int64_t>(std::floor(static_cast<double>(H) * (1.0 - o.pruning_ratio) / align)) * align;
  if (H2 < align) {
    throw UsageError("--pruning_ratio " + std::to_string(o.pruning_ratio) + " leaves no hidden width that is a multiple of " +
                     std::to_string(align) + " (hidden_size " + std::to_string(H) + ")");
  }
  const int64_t hd2 = H2 / nh;
  const bool proj = cfg.has_projections();
  const std::string d = "model.decoder.";
  auto get = [&](const std::string& k) -> at::Tensor {
    auto it = narrowed.find(k);
    if (it != narrowed.end()) return it->second;
    auto r = raw.find(k);
    return r == raw.end() ? at::Tensor() : r->second.to(c10::kFloat);
  };
  // Residual channel importance: squared weights touching the channel, everywhere.
  at::Tensor imp = at::zeros({H}, at::TensorOptions().dtype(c10::kFloat));
  auto add_cols = [&](const at::Tensor& t) { if (t.defined()) imp.add_(t.pow(2).sum(0)); };
  auto add_rows = [&](const at::Tensor& t) { if (t.defined()) imp.add_(t.pow(2).reshape({H, -1}).sum(1)); };
  if (!proj) add_cols(get(d + "embed_tokens.weight"));
  add_cols(get(d + "embed_positions.weight"));
  add_cols(get(d + "project_out.weight"));
  add_rows(get(d + "project_in.weight"));
  for (int64_t i = 0; i < cfg.num_hidden_layers; ++i) {
    const std::string p = d + "layers." + std::to_string(i) + ".";
    for (int64_t k = 0; k < 6; ++k) {
      const LinearSlot& s = slots[static_cast<size_t>(i * 6 + k)];
      if (k == 3 || k == 5) add_rows(s.weight);  // out_proj, fc2 write the residual
      else add_cols(s.weight);                   // k, v, q, fc1 read it
    }
    add_rows(get(p + "self_attn.out_proj.bias"));
    add_rows(get(p + "fc2.bias"));
  }
  if (o.pruning_method == "random") imp = at::rand({H}, gen);
  if (acts != nullptr) imp = acts->residual;
  const at::Tensor keep_res = at::tensor(top_indices(imp, H2));

  auto narrow_cols = [&](const std::string& k) {
    at::Tensor t = get(k);
    if (t.defined()) narrowed[k] = t.index_select(1, keep_res).contiguous();
  };
  auto narrow_vec = [&](const std::string& k, const at::Tensor& idx) {
    at::Tensor t = get(k);
    if (t.defined()) narrowed[k] = t.index_select(0, idx).contiguous();
  };
  if (!proj) narrow_cols(d + "embed_tokens.weight");
  narrow_cols(d + "embed_positions.weight");
  narrow_cols(d + "project_out.weight");
  if (raw.count(d + "project_in.weight")) narrowed[d + "project_in.weight"] = get(d + "project_in.weight").index_select(0, keep_res).contiguous();
  for (const char* ln : {"final_layer_norm.weight", "final_layer_norm.bias"}) narrow_vec(d + ln, keep_res);
  if (!proj && raw.count("lm_head.weight") && !cfg.tie_word_embeddings) narrow_cols("lm_head.weight");
  const double fold = std::sqrt(static_cast<double>(hd2) / static_cast<double>(hd));  // hd^-0.5 / hd2^-0.5
  for (int64_t i = 0; i < cfg.num_hidden_layers; ++i) {
    const std::string p = d + "layers." + std::to_string(i) + ".";
    LinearSlot& kp = slots[static_cast<size_t>(i * 6 + 0)];
    LinearSlot& vp = slots[static_cast<size_t>(i * 6 + 1)];
    LinearSlot& qp = slots[static_cast<size_t>(i * 6 + 2)];
    LinearSlot& op = slots[static_cast<size_t>(i * 6 + 3)];
    LinearSlot& f1 = slots[static_cast<size_t>(i * 6 + 4)];
    LinearSlot& f2 = slots[static_cast<size_t>(i * 6 + 5)];
    // Attention dims: the same count kept in every head, by the L2 norm of their q/k/v rows
    // and out_proj column.
    at::Tensor dim_imp = qp.weight.pow(2).sum(1) + kp.weight.pow(2).sum(1) + vp.weight.pow(2).sum(1) + op.weight.pow(2).sum(0);
    if (o.pruning_method == "random") dim_imp = at::rand({H}, gen);
    if (acts != nullptr) dim_imp = acts->attention[static_cast<size_t>(i)];
    std::vector<int64_t> attn;
    for (int64_t h = 0; h < nh; ++h) {
      for (int64_t j : top_indices(dim_imp.slice(0, h * hd, (h + 1) * hd), hd2)) attn.push_back(h * hd + j);
    }
    const at::Tensor keep_attn = at::tensor(attn);
    for (LinearSlot* s : {&kp, &vp, &qp}) s->weight = s->weight.index_select(0, keep_attn).index_select(1, keep_res).contiguous();
    qp.weight.mul_(fold);
    op.weight = op.weight.index_select(0, keep_res).index_select(1, keep_attn).contiguous();
    f1.weight = f1.weight.index_select(1, keep_res).contiguous();
    f2.weight = f2.weight.index_select(0, keep_res).contiguous();
    for (const char* b : {"self_attn.k_proj.bias", "self_attn.v_proj.bias"}) narrow_vec(p + b, keep_attn);
    narrow_vec(p + "self_attn.q_proj.bias", keep_attn);
    if (narrowed.count(p + "self_attn.q_proj.bias")) narrowed[p + "self_attn.q_proj.bias"].mul_(fold);
    for (const char* b : {"self_attn.out_proj.bias", "fc2.bias", "self_attn_layer_norm.weight", "self_attn_layer_norm.bias",
                          "final_layer_norm.weight", "final_layer_norm.bias"}) {
      narrow_vec(p + b, keep_res);
    }
  }
  // Narrowed tensors keep their checkpoint dtype.
  for (auto& [k, t] : narrowed) {
    auto r = raw.find(k);
    if (r != raw.end()) t = t.to(r->second.scalar_type());
  }
  config["hidden_size"] = H2;
  if (!proj) config["word_embed_proj_dim"] = H2;
}

}  // namespace

std::vector<std::string> method_names() { return method_registry().names(); }

const std::vector<std::string>& pruning_types() {
  static const std::vector<std::string> kTypes = {"structured", "unstructured", "semi_structured"};
  return kTypes;
}

const std::vector<std::string>& structures() {
  static const std::vector<std::string> kStructures = {"ffn", "hidden"};
  return kStructures;
}

void validate(const PruneOptions& o) {
  if (o.model_path.empty()) throw UsageError("--model_path is required");
  if (o.output_dir.empty()) throw UsageError("--output_dir is required");
  const Method& method = method_registry().get(o.pruning_method);
  if (o.pruning_type == "structured" && !method.neuron_scores) {
    throw UsageError("--pruning_method " + o.pruning_method + " ranks single weights; structured pruning ranks neurons "
                     "with magnitude, activation or random");
  }
  if (o.pruning_type != "structured" && !method.prune_linear) {
    throw UsageError("--pruning_method " + o.pruning_method + " ranks FFN neurons (structured pruning only); "
                     "weights are pruned by magnitude, wanda, sparsegpt or random");
  }
  if (o.scope == "global" && !method.weight_scores) {
    throw UsageError("--scope global needs every layer's scores at once; " + o.pruning_method +
                     " prunes layer by layer (use --scope layer)");
  }
  if (method.needs_calibration && o.calibration.calibration_file.empty()) {
    throw UsageError("--pruning_method " + o.pruning_method + " needs calibration data: pass --calibration_file");
  }
  calib::validate(o.calibration);
  if (!(o.damp_percent >= 0.0 && o.damp_percent < 1.0)) {
    throw UsageError("--damp_percent must be in [0, 1), found " + std::to_string(o.damp_percent));
  }
  const auto& types = pruning_types();
  if (std::find(types.begin(), types.end(), o.pruning_type) == types.end()) {
    throw UsageError("--pruning_type: expected structured, unstructured or semi_structured, found '" + o.pruning_type + "'");
  }
  if (o.pruning_type == "semi_structured") {
    parse_pattern(o.sparsity_pattern);
  } else if (!(o.pruning_ratio > 0.0 && o.pruning_ratio < 1.0)) {
    throw UsageError("--pruning_ratio must be in (0, 1), found " + std::to_string(o.pruning_ratio));
  }
  if (o.scope != "layer" && o.scope != "global") throw UsageError("--scope: expected layer or global, found '" + o.scope + "'");
  if (o.scope == "global" && o.pruning_type != "unstructured") {
    throw UsageError("--scope global applies to unstructured pruning only (structured removes the same count per layer; "
                     "N:M is per group)");
  }
  const auto& kinds = structures();
  if (o.pruning_type == "structured" && std::find(kinds.begin(), kinds.end(), o.structure) == kinds.end()) {
    throw UsageError("--structure: expected ffn (FFN neurons) or hidden (hidden_size), found '" + o.structure +
                     "' (removing attention heads cannot be expressed in transformers' OPT)");
  }

  parse_byte_size(o.max_shard_size);
}

nlohmann::json run_prune(const PruneOptions& o, const RunContext& ctx,
                         const std::function<nlohmann::json(const nlohmann::json&)>& decorate) {
  validate(o);
  const Method& method = method_registry().get(o.pruning_method);
  const std::string dir = io::resolve_model_dir(o.model_path, o.revision);
  const std::string config_path = (fs::path(dir) / "config.json").string();
  nlohmann::json config = io::read_json_file(config_path);
  const model::OptConfig cfg = model::OptConfig::from_json(config, config_path);
  if (io::json_field<std::string>(config, "model_type", "", config_path) != "opt") {
    throw InputError(config_path + ": unsupported model_type (supported: opt)");
  }
  if (!o.eval_file.empty()) eval::read_eval_text(o.eval_file);  // fail early on a bad eval file

  io::ModelDirWriter out(o.output_dir, io::ModelDirWriter::Place::kNewDirectory, o.overwrite);
  at::NoGradGuard no_grad;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(ctx.seed);
  io::StateDict raw;
  for (auto& [k, v] : io::load_weights(dir)) raw[model::canonical_key(k)] = v;
  auto has = [&](const std::string& n) { return raw.count(n) != 0; };
  auto take = [&](const std::string& n) {
    auto it = raw.find(n);
    if (it == raw.end()) throw InputError(dir + ": missing tensor '" + n + "'");
    return it->second;
  };

  // Every decoder-layer Linear, dense float32.
  std::vector<LinearSlot> slots;
  const int64_t H = cfg.hidden_size, F = cfg.ffn_dim;
  for (int64_t i = 0; i < cfg.num_hidden_layers; ++i) {
    for (const char* name : kLinears) {
      LinearSlot s;
      s.prefix = "model.decoder.layers." + std::to_string(i) + "." + name + ".";
      const std::string n(name);
      const int64_t rows = n == "fc1" ? F : H, cols = n == "fc2" ? F : H;
      s.packed = model::load_packed_weight(s.prefix, has, take, rows, cols);
      if (s.packed) {
        s.weight = s.packed->dequantize();
      } else {
        at::Tensor w = take(s.prefix + "weight");
        if (w.sizes() != at::IntArrayRef({rows, cols})) {
          throw InputError(dir + ": tensor '" + s.prefix + "weight' has shape " + io::shape_string(w.sizes()) +
                           ", expected " + io::shape_string({rows, cols}));
        }
        s.dense_dtype = w.scalar_type();
        s.weight = w.to(c10::kFloat).clone();
      }
      slots.push_back(std::move(s));
    }
  }

  const std::set<std::string> linear_keys = linear_weight_keys(raw, slots);
  model::WeightCount before;
  for (const auto& [k, v] : raw) {
    if ((k == "lm_head.weight" && cfg.tie_word_embeddings) || linear_keys.count(k)) continue;
    before.add(v, false);
  }
  for (const auto& s : slots) before.add(s.weight, true, weight_bytes(s.weight, s.packed.get(), s.dense_dtype));

  // Decide and apply, layer by layer.
  nlohmann::json per_linear = nlohmann::json::object();
  std::map<std::string, at::Tensor> narrowed;  // structured: replaced non-linear tensors (fc1 bias)
  int64_t kept_neurons = F;
  double requested = o.pruning_ratio;
  std::pair<int64_t, int64_t> nm{0, 0};
  if (o.pruning_type == "semi_structured") {
    nm = parse_pattern(o.sparsity_pattern);
    requested = 1.0 - static_cast<double>(nm.first) / static_cast<double>(nm.second);
  }
  if (o.pruning_type == "structured" && o.structure == "ffn") {
    // Whole FFN neurons, the same count in every layer, rounded down to keep packed formats
    // aligned (8; 32 for 3-bit rtn; a multiple of the rtn group size).
    const int64_t align = packed_alignment(slots, config);
    kept_neurons = static_cast<int64_t>(std::floor(static_cast<double>(F) * (1.0 - o.pruning_ratio) / align)) * align;
    if (kept_neurons < align) {
      throw UsageError("--pruning_ratio " + std::to_string(o.pruning_ratio) + " would leave fewer than " +
                       std::to_string(align) + " FFN neurons per layer (ffn_dim " + std::to_string(F) + ")");
    }
    config["ffn_dim"] = kept_neurons;
  }

  std::string state_dir;  // kept layers of a calibrated run, removed once the output is committed
  Sparsity spec;
  spec.ratio = o.pruning_ratio;
  spec.damp_percent = o.damp_percent;
  if (o.pruning_type == "semi_structured") {
    spec.keep_n = nm.first;
    spec.group_m = nm.second;
    for (const auto& s : slots) {
      if (s.weight.size(1) % nm.second != 0) {
        throw UsageError("N:M pattern " + o.sparsity_pattern + " needs input widths divisible by " + std::to_string(nm.second) +
                         "; '" + s.prefix + "weight' has " + std::to_string(s.weight.size(1)));
      }
    }
  }
  // Layer i's whole FFN neurons: fc1 rows and fc2 columns go (the slots narrow; a running
  // model keeps its shapes with the removed fc2 columns zero). Returns the kept indices.
  auto prune_neurons = [&](int64_t i, const calib::LinearStats* fc2_stats) {
    LinearSlot& fc1 = slots[static_cast<size_t>(i * 6 + 4)];
    LinearSlot& fc2 = slots[static_cast<size_t>(i * 6 + 5)];
    const std::string bias_name = fc1.prefix + "bias";
    at::Tensor b1 = has(bias_name) ? take(bias_name).to(c10::kFloat) : at::Tensor();
    return at::tensor(top_indices(method.neuron_scores(fc1.weight, b1, fc2.weight, fc2_stats, gen), kept_neurons));
  };
  auto narrow_neurons = [&](int64_t i, const at::Tensor& idx) {
    LinearSlot& fc1 = slots[static_cast<size_t>(i * 6 + 4)];
    LinearSlot& fc2 = slots[static_cast<size_t>(i * 6 + 5)];
    const std::string bias_name = fc1.prefix + "bias";
    fc1.weight = fc1.weight.index_select(0, idx).contiguous();
    fc2.weight = fc2.weight.index_select(1, idx).contiguous();
    if (has(bias_name)) narrowed[bias_name] = take(bias_name).index_select(0, idx).contiguous();
  };

  // The layer-wise form on the shared calibration layer: the statistics of layer i's inputs
  // (from the pruned layers before it), then the method, then the pruned layer runs to make
  // the next layer's inputs. Methods without calibration take it too when given a calibration
  // file: their output error is then measured the same way.
  class PruneLayers : public calib::LayerMethod {
   public:
    using Fn = std::function<void(calib::LayerJob&)>;
    using Restore = std::function<void(int64_t, const std::map<std::string, at::Tensor>&)>;
    PruneLayers(calib::Collect c, Fn fn, Restore restore) : c_(c), fn_(std::move(fn)), restore_(std::move(restore)) {}
    calib::Collect collect() const override { return c_; }
    bool true_sequential() const override { return false; }  // one pass per layer, as Wanda and SparseGPT publish
    calib::Compressed compress(const std::string&, const at::Tensor& w, const calib::LinearStats&) override {
      calib::Compressed c;
      c.dense = w;
      return c;
    }
    void compress_layer(calib::LayerJob& job) override { fn_(job); }
    void restored(int64_t i, const std::map<std::string, at::Tensor>& extras) override { restore_(i, extras); }

   private:
    calib::Collect c_;
    Fn fn_;
    Restore restore_;
  };

  const bool layerwise = o.pruning_type != "structured" ? o.scope == "layer" : o.structure == "ffn";
  nlohmann::json calibration = nullptr;
  if (o.pruning_type == "structured" && o.structure == "hidden") {
    HiddenActivations acts;
    if (method.needs_calibration) acts = hidden_activations(dir, o, ctx, gen);
    prune_hidden_width(o, cfg, slots, raw, narrowed, config, gen, method.needs_calibration ? &acts : nullptr);
  } else if (o.pruning_type == "unstructured" && o.scope == "global") {
    std::vector<at::Tensor> scores;
    for (auto& s : slots) scores.push_back(method.weight_scores(s.weight, nullptr, gen));
    const auto masks = global_lowest_fraction_masks(scores, o.pruning_ratio);
    for (size_t i = 0; i < slots.size(); ++i) slots[i].weight.mul_(masks[i]);
  } else if (!method.needs_calibration && o.calibration.calibration_file.empty()) {
    for (int64_t i = 0; i < cfg.num_hidden_layers; ++i) {
      if (o.pruning_type == "structured") {
        narrow_neurons(i, prune_neurons(i, nullptr));
        continue;
      }
      for (int64_t k = 0; k < 6; ++k) {
        LinearSlot& s = slots[static_cast<size_t>(i * 6 + k)];
        s.weight = method.prune_linear(s.weight, nullptr, spec, gen);
      }
    }
  } else if (layerwise) {
    auto lm = model::load_causal_lm(dir, ctx);
    const int64_t T = calib::sample_length(o.calibration, lm->info().max_positions);
    const std::vector<int64_t> ids = calib::calibration_ids(o.calibration, dir, T);
    calib::LayerDriver driver(*lm, ids, o.calibration.num_calibration_samples, T, gen);
    auto slot_of = [&](const std::string& linear) -> LinearSlot& {
      for (auto& s : slots) {
        if (s.prefix == linear + ".") return s;
      }
      throw Error("prune: no slot for " + linear);
    };
    // What the running model holds: a quantized input keeps its packing (re-quantized).
    auto as_model_holds = [&](const LinearSlot& s, const at::Tensor& w) {
      calib::Compressed c;
      if (s.packed) {
        c.packed = s.packed->requantize(w);
      } else {
        c.dense = w;
      }
      return c;
    };
    PruneLayers layers(
        method.collect,
        [&](calib::LayerJob& job) {
          std::vector<std::string> names;
          for (const auto& l : job.layout().linears) names.push_back(l.name);
          auto stats = job.collect(names, method.collect);
          if (o.pruning_type == "structured") {
            LinearSlot& fc2 = slots[static_cast<size_t>(job.layer() * 6 + 5)];
            const std::string name = fc2.prefix.substr(0, fc2.prefix.size() - 1);
            const at::Tensor idx = prune_neurons(job.layer(), &stats.at(name));
            at::Tensor zeroed = at::zeros_like(fc2.weight);
            zeroed.index_copy_(1, idx, fc2.weight.index_select(1, idx));
            job.install(name, as_model_holds(fc2, zeroed), fc2.weight, stats.at(name));
            narrow_neurons(job.layer(), idx);
            job.save_extra("kept_neurons", idx);
            return;
          }
          for (const auto& name : names) {
            LinearSlot& s = slot_of(name);
            const at::Tensor before = s.weight;
            s.weight = method.prune_linear(s.weight, &stats.at(name), spec, gen);
            job.install(name, as_model_holds(s, s.weight), before, stats.at(name));
          }
        },
        [&](int64_t i, const std::map<std::string, at::Tensor>& extras) {
          if (o.pruning_type == "structured") {
            narrow_neurons(i, extras.at("kept_neurons"));
            return;
          }
          for (const auto& l : lm->layer_layout(i).linears) slot_of(l.name).weight = lm->linear_weight(l.name);
        });
    calib::LayerwiseOptions lo;
    lo.state_dir = calib::state_dir_for(o.output_dir);
    PruneOptions copy = o;
    lo.fingerprint = calib::run_fingerprint("prune", dir, option_fields(copy), ctx);
    state_dir = lo.state_dir;
    const calib::LayerwiseResult result = calib::run_layerwise(*lm, driver, layers, lo, ctx);
    calibration = {{"file", o.calibration.calibration_file},
                   {"samples", o.calibration.num_calibration_samples},
                   {"seq_len", T},
                   {"tokens", static_cast<int64_t>(ids.size())},
                   {"mean_output_error", result.mean_output_error()},
                   {"resumed_layers", result.resumed_layers},
                   {"per_layer", result.to_json()}};
  } else {
    throw UsageError("--calibration_file is not used by " + o.pruning_type + " pruning with --scope " + o.scope);
  }

  // Write: non-linear tensors as they were (narrowed where structured), linears dense in their
  // dtype or re-quantized with their own settings.
  model::WeightCount after;
  for (const auto& [k, v] : raw) {
    if ((k == "lm_head.weight" && cfg.tie_word_embeddings) || linear_keys.count(k)) continue;
    const at::Tensor t = narrowed.count(k) ? narrowed.at(k) : v;
    out.add_tensor(k, t);
    after.add(t, false);
  }
  Progress progress("prune", static_cast<int64_t>(slots.size()), ctx.progress, "linear");
  for (auto& s : slots) {
    ctx.check_cancelled();
    at::Tensor final_w;
    std::unique_ptr<model::PackedWeight> packed;
    if (s.packed) {
      packed = s.packed->requantize(s.weight);
      final_w = packed->dequantize();
      for (const auto& [name, t] : packed->state_dict(s.prefix)) out.add_tensor(name, t);
    } else {
      final_w = s.weight.to(s.dense_dtype);
      out.add_tensor(s.prefix + "weight", final_w);
    }
    const int64_t zeros_before = after.linear_zeros;
    after.add(final_w, true, weight_bytes(final_w, packed.get(), s.dense_dtype));
    per_linear[s.prefix.substr(0, s.prefix.size() - 1)] = {
        {"requested_sparsity", o.pruning_type == "structured" ? 0.0 : requested},
        {"achieved_sparsity", static_cast<double>(after.linear_zeros - zeros_before) / static_cast<double>(final_w.numel())},
        {"shape", final_w.sizes().vec()}};
    progress.advance();
  }
  progress.finish();
  out.finish_weights(parse_byte_size(o.max_shard_size));
  out.write_json("config.json", config);
  out.copy_side_files(dir);

  nlohmann::json m = nlohmann::json::object();
  m["pruning_type"] = o.pruning_type;
  m["pruning_method"] = o.pruning_method;
  m["requested_sparsity"] = requested;
  m["achieved_sparsity"] = after.sparsity();
  if (o.pruning_type == "structured" && o.structure == "hidden") {
    m["hidden_size_before"] = H;
    m["hidden_size_after"] = config["hidden_size"];
    m["achieved_ratio"] = 1.0 - config["hidden_size"].get<double>() / static_cast<double>(H);
  } else if (o.pruning_type == "structured") {
    m["ffn_dim_before"] = F;
    m["ffn_dim_after"] = kept_neurons;
    m["achieved_ratio"] = 1.0 - static_cast<double>(kept_neurons) / static_cast<double>(F);
  }
  m["num_parameters_before"] = before.num_parameters;
  m["num_parameters_after"] = after.num_parameters;
  m["nonzero_parameters_before"] = before.nonzero_parameters;
  m["nonzero_parameters_after"] = after.nonzero_parameters;
  m["disk_size_bytes_before"] = io::directory_size_bytes(dir);
  m["disk_size_bytes_after"] = out.staged_bytes();
  m["linears"] = per_linear;
  if (!calibration.is_null()) {
    for (const auto& l : calibration["per_layer"]) {
      for (const auto& [name, v] : l.at("linears").items()) {
        if (m["linears"].contains(name)) m["linears"][name]["output_error"] = v.at("output_error");
      }
    }
    m["calibration"] = calibration;
    m["mean_output_error"] = calibration["mean_output_error"];
  }
  if (!o.eval_file.empty()) {
    m["perplexity_before"] = perplexity_of(dir, o.eval_file, o.eval_max_length, ctx);
    m["perplexity_after"] = perplexity_of(out.staging(), o.eval_file, o.eval_max_length, ctx);
  }
  m["input"] = before.block(dir, m["disk_size_bytes_before"].get<uint64_t>());
  m["output"] = after.block(out.final_dir(), m["disk_size_bytes_after"].get<uint64_t>());
  out.commit("metrics.json", decorate(m));
  if (!state_dir.empty()) calib::remove_state(state_dir);
  log_info("wrote " + out.final_dir());
  return m;
}

std::vector<OptionField> option_fields(PruneOptions& o) {
  using R = OptionField::Role;
  std::vector<OptionField> all = {
      {"model_path", "model directory or hub id (quantized inputs are re-quantized)", &o.model_path, R::kInputModel, true},
      {"output_dir", "where the pruned model directory goes", &o.output_dir, R::kOutputDir, true},
      {"pruning_ratio", "fraction to remove, in (0, 1)", &o.pruning_ratio},
      {"pruning_method",
       "magnitude | random | wanda (|w| x input norm, per output row; needs calibration) | sparsegpt (OBS updates of the "
       "kept weights; needs calibration) | activation (structured: mean |activation| of the neuron; needs calibration)",
       &o.pruning_method},
      {"pruning_type", "structured (FFN neurons) | unstructured | semi_structured", &o.pruning_type},
      {"sparsity_pattern", "N:M for semi_structured (2:4, 4:8)", &o.sparsity_pattern},
      {"scope", "layer (same ratio per Linear) | global (one threshold; unstructured)", &o.scope},
      {"structure", "structured: ffn (FFN neurons) | hidden (hidden_size)", &o.structure},
      {"damp_percent", "sparsegpt: dampening as a fraction of the Hessian's mean diagonal, in [0, 1)", &o.damp_percent},
      {"eval_file", "report perplexity before and after on this text", &o.eval_file},
      {"max_length", "perplexity window (0 = max_position_embeddings)", &o.eval_max_length},
      {"max_shard_size", "largest safetensors file, e.g. 5GB", &o.max_shard_size},
  };
  auto fields = calib::option_fields(o.calibration);
  all.insert(all.end(), fields.begin(), fields.end());
  return all;
}

}  // namespace llmc::prune
