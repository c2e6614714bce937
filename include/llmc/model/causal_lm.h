// A causal language model as the rest of llmc sees it: logits from ids, a KV cache,
// parameters by their Hugging Face names. Models are made by model_type through a registry.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "llmc/core/run_context.h"
#include "llmc/io/state_dict.h"
#include "llmc/model/layout.h"
#include "llmc/model/packed_weight.h"

namespace llmc::model {

// Keys and values of past positions, one [B, heads, past, head_dim] pair per layer.
struct KVCache {
  std::vector<at::Tensor> keys;
  std::vector<at::Tensor> values;
  // Storage the CPU decode path writes in place, [B, heads, capacity, head_dim] per layer;
  // keys / values are then views of its first positions. Grown by doubling, never per token.
  std::vector<at::Tensor> key_store;
  std::vector<at::Tensor> value_store;
  int64_t length() const { return keys.empty() || !keys[0].defined() ? 0 : keys[0].size(2); }
};

struct ModelInfo {
  std::string model_type;
  int64_t vocab_size{0};
  int64_t max_positions{0};
  int64_t num_layers{0};
  std::optional<int64_t> bos_token_id;
  std::optional<int64_t> eos_token_id;
  std::optional<int64_t> pad_token_id;
};

class CausalLM {
 public:
  virtual ~CausalLM() = default;

  // input_ids: [B, T] int64 on the model's device. attention_mask: [B, past + T] with 1 for
  // real tokens and 0 for padding (past = cache length, 0 without a cache). When `cache` is
  // given it is read and extended. Returns logits [B, T, vocab] in the compute dtype.
  virtual at::Tensor forward(const at::Tensor& input_ids, const at::Tensor& attention_mask, KVCache* cache) = 0;
  // As forward(), but only the last position's logits [B, 1, vocab] (what generation needs:
  // the lm_head product is skipped for the other positions of a prompt).
  virtual at::Tensor forward_last(const at::Tensor& input_ids, const at::Tensor& attention_mask, KVCache* cache) {
    return forward(input_ids, attention_mask, cache).narrow(1, input_ids.size(1) - 1, 1);
  }

  virtual const ModelInfo& info() const = 0;
  // Every parameter under its Hugging Face name (tied weights appear under both names).
  virtual std::vector<std::pair<std::string, at::Tensor>> named_parameters() const = 0;
  // Names of the weights of the decoder layers' linear layers (q/k/v/out, fc1, fc2 for OPT).
  virtual std::vector<std::string> decoder_linear_weight_names() const = 0;
  // Linear weights held packed (quantized), by weight name ("...fc1.weight"); they are not
  // among named_parameters().
  virtual std::vector<std::pair<std::string, std::shared_ptr<PackedWeight>>> packed_weights() const = 0;
  // ---- Layer by layer: the calibration layer (calib/) runs one decoder layer at a time over
  // calibration data for GPTQ, AWQ, SparseGPT, Wanda and activation importance.
  // Hidden states entering decoder layer 0 for ids/attention_mask ([B, T]), and the
  // additive attention mask every layer takes.
  virtual std::pair<at::Tensor, at::Tensor> embed(const at::Tensor& input_ids, const at::Tensor& attention_mask) = 0;
  // Runs decoder layer i. When given, `observe(linear, input)` sees the input of each of the
  // layer's Linears (linear = "model.decoder.layers.<i>.fc1" etc.).
  virtual at::Tensor run_layer(int64_t i, const at::Tensor& hidden, const at::Tensor& mask,
                               const std::function<void(const std::string&, const at::Tensor&)>& observe) = 0;
  // Replaces a Linear's weight (float [out, in], same shape); a packed Linear is re-packed
  // with its own settings.
  virtual void set_linear_weight(const std::string& linear, const at::Tensor& weight) = 0;
  // Decoder layer i's Linears, compression order and scale groups (model/layout.h).
  virtual LayerLayout layer_layout(int64_t i) const = 0;
  // A Linear's current weight as float32 [out, in] (dequantized when packed), a copy.
  virtual at::Tensor linear_weight(const std::string& linear) const = 0;
  // Makes a Linear hold `packed` (when non-null) or the dense float weight `dense` (same shape).
  virtual void install_linear(const std::string& linear, const at::Tensor& dense, std::shared_ptr<PackedWeight> packed) = 0;
  // A parameter by its Hugging Face name as the model holds it (edits in place change the
  // model); undefined when there is none.
  virtual at::Tensor parameter(const std::string& name) const = 0;

  // ---- Training (distill). The final hidden states [B, T, E] (transformers' last hidden
  // state: after the final LayerNorm and project_out) and the logits made from them.
  virtual at::Tensor hidden_states(const at::Tensor& input_ids, const at::Tensor& attention_mask) = 0;
  virtual at::Tensor logits(const at::Tensor& hidden) = 0;
  // Training mode applies the config's dropout (drawn from the device's default generator).
  virtual void set_training(bool on) = 0;
  // config.json as loaded.
  virtual const nlohmann::json& config() const = 0;

  virtual c10::Device device() const = 0;
  virtual c10::ScalarType dtype() const = 0;
};

// The config.json model_type values the model registry holds.
std::vector<std::string> model_types();

// Loads config.json and the weights of a Hugging Face model directory onto ctx.device in
// ctx.dtype. InputError (exit 3) for an unsupported model_type, missing/ill-shaped tensors,
// unsupported weight dtypes.
std::unique_ptr<CausalLM> load_causal_lm(const std::string& dir, const RunContext& ctx);

// Builds a model from a config.json object and its tensors (Hugging Face names); `source`
// names the origin in errors. Same checks as load_causal_lm.
std::unique_ptr<CausalLM> make_causal_lm(const nlohmann::json& config, io::StateDict weights, const std::string& source,
                                         const RunContext& ctx);

// Fresh weights for a config, initialised as transformers' _init_weights does: linear and
// embedding weights normal(0, init_std) (the padding row of the token embedding zero), zero
// biases, LayerNorms weight 1 and bias 0. float32 on the CPU, deterministic in `seed`.
io::StateDict init_weights(const nlohmann::json& config, uint64_t seed);

}  // namespace llmc::model
