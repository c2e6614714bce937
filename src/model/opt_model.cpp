// OPT loading: normalizes checkpoint keys, checks every tensor against config.json, builds
// the modules on the run's device and dtype.
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/zeros.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "llmc/core/error.h"
#include "llmc/core/options.h"
#include "llmc/io/state_dict.h"
#include "llmc/core/logging.h"
#include "llmc/io/hf_model_dir.h"
#include "llmc/io/safetensors.h"
#include "fast_decode.h"
#include "opt_factory.h"
#include "opt_modules.h"

namespace llmc::model {

namespace {

class WeightSource {
 public:
  WeightSource(io::StateDict sd, std::string dir, const RunContext& ctx) : dir_(std::move(dir)), ctx_(ctx) {
    for (auto& [k, v] : sd) tensors_[canonical_key(k)] = v;
  }

  bool has(const std::string& name) const { return tensors_.count(name) != 0; }

  // The tensor `name`, checked against `shape`, as a contiguous tensor on the run's device
  // and dtype. `why` explains the expected shape in the error.
  at::Tensor take(const std::string& name, std::vector<int64_t> shape, const std::string& why, bool keep_half = false) {
    auto it = tensors_.find(name);
    if (it == tensors_.end()) throw InputError(dir_ + ": missing tensor '" + name + "'");
    const at::Tensor& t = it->second;
    const auto st = t.scalar_type();
    if (st != c10::kFloat && st != c10::kHalf && st != c10::kBFloat16) {
      throw InputError(dir_ + ": tensor '" + name + "' has dtype " + std::string(c10::toString(st)) +
                       ", expected float32, float16 or bfloat16");
    }
    if (t.sizes() != at::IntArrayRef(shape)) {
      throw InputError(dir_ + ": tensor '" + name + "' has shape " + io::shape_string(t.sizes()) + ", expected " +
                       io::shape_string(shape) + " from config.json (" + why + ")");
    }
    used_.insert(name);
    const c10::ScalarType dtype = keep_half && st == c10::kHalf ? c10::kHalf : ctx_.dtype;
    return t.to(ctx_.device, dtype).contiguous().detach();
  }

  // A tensor as stored (packed codes, scales), moved to the run's device only.
  at::Tensor take_raw(const std::string& name) {
    auto it = tensors_.find(name);
    if (it == tensors_.end()) throw InputError(dir_ + ": missing tensor '" + name + "'");
    used_.insert(name);
    return it->second.to(ctx_.device).contiguous();
  }

  void warn_unused() const {
    for (const auto& [k, v] : tensors_) {
      if (!used_.count(k)) log_warn(dir_ + ": ignoring unused checkpoint tensor '" + quote_prefix(k) + "'");
    }
  }

 private:
  std::map<std::string, at::Tensor> tensors_;
  std::set<std::string> used_;
  std::string dir_;
  const RunContext& ctx_;
};

class OptCausalLM : public CausalLM {
 public:
  OptCausalLM(OptForCausalLM module, OptConfig config, nlohmann::json config_json, const RunContext& ctx)
      : module_(std::move(module)),
        config_(std::move(config)),
        config_json_(std::move(config_json)),
        device_(ctx.device),
        dtype_(ctx.dtype) {
    module_->train(false);
    info_.model_type = "opt";
    info_.vocab_size = config_.vocab_size;
    info_.max_positions = config_.max_position_embeddings;
    info_.num_layers = config_.num_hidden_layers;
    info_.bos_token_id = config_.bos_token_id;
    info_.eos_token_id = config_.eos_token_id;
    info_.pad_token_id = config_.pad_token_id;
  }

  at::Tensor forward(const at::Tensor& input_ids, const at::Tensor& attention_mask, KVCache* cache) override {
    return run(input_ids, attention_mask, cache, false);
  }

  at::Tensor forward_last(const at::Tensor& input_ids, const at::Tensor& attention_mask, KVCache* cache) override {
    return run(input_ids, attention_mask, cache, true);
  }

  at::Tensor run(const at::Tensor& input_ids, const at::Tensor& attention_mask, KVCache* cache, bool last_only) {
    const int64_t past = cache != nullptr ? cache->length() : 0;
    if (input_ids.dim() != 2 || attention_mask.dim() != 2 || attention_mask.size(0) != input_ids.size(0) ||
        attention_mask.size(1) != past + input_ids.size(1)) {
      throw UsageError("forward: expected input_ids [B, T] and attention_mask [B, past + T]; got " +
                       io::shape_string(input_ids.sizes()) + " and " + io::shape_string(attention_mask.sizes()) + " with past " +
                       std::to_string(past));
    }
    if (past + input_ids.size(1) > config_.max_position_embeddings) {
      throw UsageError("sequence of " + std::to_string(past + input_ids.size(1)) +
                       " tokens exceeds max_position_embeddings " + std::to_string(config_.max_position_embeddings));
    }
    std::vector<at::Tensor>* kc = nullptr;
    std::vector<at::Tensor>* vc = nullptr;
    if (cache != nullptr) {
      cache->keys.resize(static_cast<size_t>(config_.num_hidden_layers));
      cache->values.resize(static_cast<size_t>(config_.num_hidden_layers));
      kc = &cache->keys;
      vc = &cache->values;
    }
    if (auto* fast = fast_decoder(input_ids, attention_mask, cache, past)) {
      return fast->step(input_ids.item<int64_t>(), past, *cache);
    }
    at::Tensor h = module_->model->decoder->forward(input_ids, attention_mask, kc, vc, past);
    if (last_only) h = h.narrow(1, h.size(1) - 1, 1);
    return module_->lm_head->forward(h);
  }

  // The decode path (fast_decode.h) when this step is one token of one unpadded sequence on
  // the CPU in float32 outside training; null otherwise.
  OptFastDecoder* fast_decoder(const at::Tensor& ids, const at::Tensor& mask, const KVCache* cache, int64_t past) {
    if (cache == nullptr || ids.size(0) != 1 || ids.size(1) != 1 || !device_.is_cpu() || dtype_ != c10::kFloat ||
        module_->is_training() || at::GradMode::is_enabled() || !fast_decode_enabled() || !ids.device().is_cpu()) {
      return nullptr;
    }
    const int64_t token = ids.item<int64_t>();
    if (token < 0 || token >= config_.vocab_size) return nullptr;  // the modules' path reports it
    at::Tensor m = mask.to(c10::kCPU, c10::kLong).contiguous();
    const int64_t* mp = m.data_ptr<int64_t>();
    for (int64_t i = 0; i < m.numel(); ++i) {
      if (mp[i] != 1) return nullptr;
    }
    if (!fast_built_) {
      fast_ = OptFastDecoder::build(*module_, config_);
      fast_built_ = true;
    }
    return fast_ && fast_->accepts(*cache, past) ? fast_.get() : nullptr;
  }

  // Weights changed: the decode path is made again on its next use.
  void drop_fast_decoder() const {
    fast_.reset();
    fast_built_ = false;
  }

  const ModelInfo& info() const override { return info_; }

  std::vector<std::pair<std::string, at::Tensor>> named_parameters() const override {
    std::vector<std::pair<std::string, at::Tensor>> out;
    for (const auto& item : module_->named_parameters(/*recurse=*/true)) out.emplace_back(item.key(), item.value());
    return out;
  }

  std::vector<std::string> decoder_linear_weight_names() const override {
    std::vector<std::string> out;
    for (int64_t i = 0; i < config_.num_hidden_layers; ++i) {
      const std::string p = "model.decoder.layers." + std::to_string(i) + ".";
      for (const char* n : {"self_attn.k_proj", "self_attn.v_proj", "self_attn.q_proj", "self_attn.out_proj", "fc1", "fc2"}) {
        out.push_back(p + n + ".weight");
      }
    }
    return out;
  }

  std::pair<at::Tensor, at::Tensor> embed(const at::Tensor& input_ids, const at::Tensor& attention_mask) override {
    return module_->model->decoder->embed(input_ids, attention_mask, 0);
  }

  at::Tensor run_layer(int64_t i, const at::Tensor& hidden, const at::Tensor& mask,
                       const std::function<void(const std::string&, const at::Tensor&)>& observe) override {
    if (i < 0 || i >= config_.num_hidden_layers) throw UsageError("run_layer: no decoder layer " + std::to_string(i));
    auto& layer = module_->model->decoder->layer_list[static_cast<size_t>(i)];
    const std::string p = "model.decoder.layers." + std::to_string(i) + ".";
    std::vector<LinearImpl*> observed;
    if (observe) {
      for (const auto& item : layer->named_modules("", false)) {
        if (auto* lin = item.value()->as<LinearImpl>()) {
          const std::string name = p + item.key();
          lin->observer = [&observe, name](const at::Tensor& x) { observe(name, x); };
          observed.push_back(lin);
        }
      }
    }
    at::Tensor out;
    try {
      out = layer->forward(hidden, mask, nullptr, nullptr);
    } catch (...) {
      for (auto* lin : observed) lin->observer = nullptr;
      throw;
    }
    for (auto* lin : observed) lin->observer = nullptr;
    return out;
  }

  void set_linear_weight(const std::string& linear, const at::Tensor& weight) override {
    const std::string rel = linear.rfind("model.", 0) == 0 ? linear.substr(6) : linear;
    for (const auto& item : module_->model->named_modules("", false)) {
      if (item.key() != rel) continue;
      auto* lin = item.value()->as<LinearImpl>();
      if (lin == nullptr) break;
      at::NoGradGuard no_grad;
      drop_fast_decoder();
      if (lin->packed) {
        lin->packed = lin->packed->requantize(weight.to(c10::kCPU, c10::kFloat));
      } else {
        if (lin->weight.sizes() != weight.sizes()) throw UsageError("set_linear_weight: shape mismatch for " + linear);
        lin->weight.copy_(weight);
      }
      return;
    }
    throw UsageError("no Linear named '" + linear + "'");
  }

  LayerLayout layer_layout(int64_t i) const override {
    if (i < 0 || i >= config_.num_hidden_layers) throw UsageError("layer_layout: no decoder layer " + std::to_string(i));
    const std::string p = "model.decoder.layers." + std::to_string(i) + ".";
    const int64_t H = config_.hidden_size, F = config_.ffn_dim;
    LayerLayout l;
    for (const char* n : {"self_attn.k_proj", "self_attn.v_proj", "self_attn.q_proj", "self_attn.out_proj"}) {
      l.linears.push_back({p + n, n, H, H});
    }
    l.linears.push_back({p + "fc1", "fc1", F, H});
    l.linears.push_back({p + "fc2", "fc2", H, F});
    // AutoGPTQ's and GPTQModel's OPT order: [q, k, v] -> out_proj -> fc1 -> fc2.
    l.sequential = {{p + "self_attn.q_proj", p + "self_attn.k_proj", p + "self_attn.v_proj"},
                    {p + "self_attn.out_proj"},
                    {p + "fc1"},
                    {p + "fc2"}};
    // AWQ's four OPT groups. Post-LN (do_layer_norm_before false, opt-350m): the norms come
    // after the residual additions and also feed the residual stream, so dividing them by s
    // changes the model; q/k/v and fc1 then read the residual stream.
    const bool pre_ln = config_.do_layer_norm_before && config_.layer_norm_elementwise_affine;
    const std::string post_ln = config_.layer_norm_elementwise_affine
                                    ? "post-LN layer (do_layer_norm_before false): the norm also feeds the residual stream"
                                    : "the LayerNorm has no weights to fold into";
    ScaleGroup qkv{p + "self_attn_layer_norm", true, {p + "self_attn.q_proj", p + "self_attn.k_proj", p + "self_attn.v_proj"},
                   true, pre_ln, pre_ln ? "" : post_ln};
    ScaleGroup out{p + "self_attn.v_proj", false, {p + "self_attn.out_proj"}, false, true, ""};
    ScaleGroup fc1{p + "final_layer_norm", true, {p + "fc1"}, false, pre_ln, pre_ln ? "" : post_ln};
    const bool relu = config_.activation_function == "relu";
    ScaleGroup fc2{p + "fc1", false, {p + "fc2"}, false, relu,
                   relu ? "" : "activation " + config_.activation_function + " is not positively homogeneous"};
    l.scale_groups = {qkv, out, fc1, fc2};
    return l;
  }

  at::Tensor linear_weight(const std::string& linear) const override {
    const LinearImpl& lin = find_linear(linear);
    if (lin.packed) return lin.packed->dequantize();
    return lin.weight.to(c10::kCPU, c10::kFloat).clone();
  }

  void install_linear(const std::string& linear, const at::Tensor& dense, std::shared_ptr<PackedWeight> packed) override {
    LinearImpl& lin = find_linear(linear);
    const int64_t out = lin.packed ? lin.packed->out_features() : lin.weight.size(0);
    const int64_t in = lin.packed ? lin.packed->in_features() : lin.weight.size(1);
    const bool fits = packed ? packed->out_features() == out && packed->in_features() == in
                             : dense.dim() == 2 && dense.size(0) == out && dense.size(1) == in;
    if (!fits) throw UsageError("install_linear: shape mismatch for " + linear);
    at::NoGradGuard no_grad;
    drop_fast_decoder();
    at::Tensor w = packed ? at::Tensor() : dense.to(device_, dtype_).contiguous().clone();
    // A weight nobody else holds (a memory-mapped 16-bit one) leaves memory now.
    if (lin.weight.defined() && lin.weight.storage().use_count() == 1) io::release_pages(lin.weight);
    lin.replace(std::move(packed), std::move(w));
  }

  at::Tensor parameter(const std::string& name) const override {
    drop_fast_decoder();  // the caller may edit it
    for (const auto& item : module_->named_parameters(/*recurse=*/true)) {
      if (item.key() == name) return item.value();
    }
    return at::Tensor();
  }

  std::vector<std::pair<std::string, std::shared_ptr<PackedWeight>>> packed_weights() const override {
    std::vector<std::pair<std::string, std::shared_ptr<PackedWeight>>> out;
    for (const auto& item : module_->named_modules("", /*include_self=*/false)) {
      if (auto* lin = item.value()->as<LinearImpl>(); lin != nullptr && lin->packed) {
        out.emplace_back(item.key() + ".weight", lin->packed);
      }
    }
    return out;
  }

  LinearImpl& find_linear(const std::string& linear) const {
    const std::string rel = linear.rfind("model.", 0) == 0 ? linear.substr(6) : linear;
    for (const auto& item : module_->model->named_modules("", false)) {
      if (item.key() != rel) continue;
      if (auto* lin = item.value()->as<LinearImpl>()) return *lin;
      break;
    }
    throw UsageError("no Linear named '" + quote_prefix(linear) + "'");
  }

  at::Tensor hidden_states(const at::Tensor& input_ids, const at::Tensor& attention_mask) override {
    if (input_ids.dim() != 2 || attention_mask.sizes() != input_ids.sizes()) {
      throw UsageError("hidden_states: expected input_ids and attention_mask [B, T]; got " +
                       io::shape_string(input_ids.sizes()) + " and " + io::shape_string(attention_mask.sizes()));
    }
    if (input_ids.size(1) > config_.max_position_embeddings) {
      throw UsageError("sequence of " + std::to_string(input_ids.size(1)) + " tokens exceeds max_position_embeddings " +
                       std::to_string(config_.max_position_embeddings));
    }
    return module_->model->decoder->forward(input_ids, attention_mask, nullptr, nullptr, 0);
  }

  at::Tensor logits(const at::Tensor& hidden) override { return module_->lm_head->forward(hidden); }

  void set_training(bool on) override {
    drop_fast_decoder();
    module_->train(on);
  }

  const nlohmann::json& config() const override { return config_json_; }

  c10::Device device() const override { return device_; }
  c10::ScalarType dtype() const override { return dtype_; }

 private:
  OptForCausalLM module_;
  OptConfig config_;
  mutable std::unique_ptr<OptFastDecoder> fast_;
  mutable bool fast_built_{false};
  nlohmann::json config_json_;
  ModelInfo info_;
  c10::Device device_;
  c10::ScalarType dtype_;
};

}  // namespace

std::unique_ptr<CausalLM> make_opt_causal_lm(const nlohmann::json& config_json, io::StateDict weights,
                                             const std::string& dir, const RunContext& ctx) {
  std::error_code ec;
  const std::string config_path =
      std::filesystem::is_directory(dir, ec) ? (std::filesystem::path(dir) / "config.json").string() : dir;
  const OptConfig c = OptConfig::from_json(config_json, config_path);
  at::NoGradGuard no_grad;
  WeightSource w(std::move(weights), dir, ctx);

  const int64_t V = c.vocab_size, H = c.hidden_size, E = c.word_embed_proj_dim, F = c.ffn_dim;
  const std::string vh = "vocab_size=" + std::to_string(V) + ", word_embed_proj_dim=" + std::to_string(E);
  const std::string hs = "hidden_size=" + std::to_string(H);
  const std::string hf = hs + ", ffn_dim=" + std::to_string(F);
  const bool cpu_f32 = ctx.device.is_cpu() && ctx.dtype == c10::kFloat;
  const bool keep_half = (config_json.contains("quantization_config") || ctx.keep_16bit_weights) && cpu_f32;
  const bool keep_half_linears = ctx.keep_16bit_weights && cpu_f32;
  const PackedLayout packed_format = packed_layout(config_json, config_path);
  auto linear = [&](const std::string& p, int64_t out, int64_t in, bool bias, const std::string& why) {
    at::Tensor b = bias ? w.take(p + ".bias", {out}, why) : at::Tensor();
    std::shared_ptr<PackedWeight> packed;
    try {
      packed = load_packed_weight(
          p + ".", [&](const std::string& n) { return w.has(n); }, [&](const std::string& n) { return w.take_raw(n); },
          out, in, packed_format);
    } catch (const InputError& e) {
      throw InputError(dir + ": " + e.what());
    }
    if (packed) return Linear(packed, b);
    return Linear(w.take(p + ".weight", {out, in}, why, keep_half_linears), b);
  };
  auto layer_norm = [&](const std::string& p) {
    if (!c.layer_norm_elementwise_affine) return LayerNorm(at::Tensor(), at::Tensor(), H);
    return LayerNorm(w.take(p + ".weight", {H}, hs), w.take(p + ".bias", {H}, hs), H);
  };

  OptDecoderParts parts;
  const std::string d = "model.decoder.";
  // A quantized checkpoint stores the token embedding (= tied lm_head, the largest dense
  // matrix) in float16; on the CPU with float32 compute it stays float16 in memory and the
  // kernels convert it exactly on the fly (half the bytes to read per decoded token).
  parts.embed_tokens = Embedding(w.take(d + "embed_tokens.weight", {V, E}, vh, keep_half), ctx.dtype);
  parts.embed_positions = Embedding(w.take(d + "embed_positions.weight", {c.max_position_embeddings + 2, H},
                                           "max_position_embeddings=" + std::to_string(c.max_position_embeddings) +
                                               " (+2 offset), " + hs),
                                    ctx.dtype);
  if (c.has_projections()) {
    parts.project_out = linear(d + "project_out", E, H, false, hs + ", word_embed_proj_dim=" + std::to_string(E));
    parts.project_in = linear(d + "project_in", H, E, false, hs + ", word_embed_proj_dim=" + std::to_string(E));
  }
  if (c.has_final_layer_norm()) parts.final_layer_norm = layer_norm(d + "final_layer_norm");
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = d + "layers." + std::to_string(i) + ".";
    OptAttention attn(linear(p + "self_attn.k_proj", H, H, c.enable_bias, hs),
                      linear(p + "self_attn.v_proj", H, H, c.enable_bias, hs),
                      linear(p + "self_attn.q_proj", H, H, c.enable_bias, hs),
                      linear(p + "self_attn.out_proj", H, H, c.enable_bias, hs), c.num_attention_heads,
                      c.attention_dropout);
    parts.layers.emplace_back(attn, layer_norm(p + "self_attn_layer_norm"), linear(p + "fc1", F, H, c.enable_bias, hf),
                              linear(p + "fc2", H, F, c.enable_bias, hf), layer_norm(p + "final_layer_norm"), c);
  }
  // As transformers' tie_weights(): with tie_word_embeddings (the default) lm_head is
  // embed_tokens' weight, whatever copy the checkpoint carries; untied, it must be present.
  Linear lm_head{nullptr};
  if (c.tie_word_embeddings) {
    if (w.has("lm_head.weight")) w.take("lm_head.weight", {V, E}, vh);  // checked, then shared
    lm_head = Linear(parts.embed_tokens->weight, at::Tensor());
  } else {
    lm_head = Linear(w.take("lm_head.weight", {V, E}, vh), at::Tensor());
  }
  w.warn_unused();
  OptForCausalLM module(OptModel(OptDecoder(std::move(parts), c)), lm_head);
  return std::make_unique<OptCausalLM>(std::move(module), c, config_json, ctx);
}

io::StateDict init_opt_weights(const nlohmann::json& config_json, uint64_t seed) {
  const OptConfig c = OptConfig::from_json(config_json, "config");
  at::NoGradGuard no_grad;
  at::Generator gen = at::detail::createCPUGenerator(seed);
  const auto f32 = at::TensorOptions().dtype(c10::kFloat);
  io::StateDict sd;
  auto normal = [&](const std::string& name, std::vector<int64_t> shape) {
    sd[name] = at::empty(shape, f32).normal_(0.0, c.init_std, gen);
  };
  auto linear = [&](const std::string& p, int64_t out, int64_t in, bool bias) {
    normal(p + ".weight", {out, in});
    if (bias) sd[p + ".bias"] = at::zeros({out}, f32);
  };
  auto layer_norm = [&](const std::string& p) {
    if (!c.layer_norm_elementwise_affine) return;
    sd[p + ".weight"] = at::ones({c.hidden_size}, f32);
    sd[p + ".bias"] = at::zeros({c.hidden_size}, f32);
  };
  const int64_t H = c.hidden_size, E = c.word_embed_proj_dim, F = c.ffn_dim;
  const std::string d = "model.decoder.";
  normal(d + "embed_tokens.weight", {c.vocab_size, E});
  if (c.pad_token_id && *c.pad_token_id >= 0 && *c.pad_token_id < c.vocab_size) {
    sd[d + "embed_tokens.weight"][*c.pad_token_id].zero_();  // nn.Embedding(padding_idx=pad_token_id)
  }
  normal(d + "embed_positions.weight", {c.max_position_embeddings + 2, H});
  if (c.has_projections()) {
    linear(d + "project_out", E, H, false);
    linear(d + "project_in", H, E, false);
  }
  if (c.has_final_layer_norm()) layer_norm(d + "final_layer_norm");
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = d + "layers." + std::to_string(i) + ".";
    for (const char* n : {"self_attn.k_proj", "self_attn.v_proj", "self_attn.q_proj", "self_attn.out_proj"}) {
      linear(p + n, H, H, c.enable_bias);
    }
    layer_norm(p + "self_attn_layer_norm");
    linear(p + "fc1", F, H, c.enable_bias);
    linear(p + "fc2", H, F, c.enable_bias);
    layer_norm(p + "final_layer_norm");
  }
  if (!c.tie_word_embeddings) normal("lm_head.weight", {c.vocab_size, E});
  return sd;
}

}  // namespace llmc::model
