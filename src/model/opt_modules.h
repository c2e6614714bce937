// Private: OPT as torch::nn modules whose parameters carry the Hugging Face names
// (named_parameters() keys equal checkpoint keys). docs/formats.md §1. Only model code
// includes this header (torch::nn is expensive to compile).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include "llmc/model/opt_config.h"
#include "llmc/model/packed_weight.h"

namespace llmc::model {

// y = x W^T + b, with W dense (a registered parameter "weight") or packed (quantized,
// multiplied without a full dequantized copy).
class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(at::Tensor weight, at::Tensor bias);
  LinearImpl(std::shared_ptr<PackedWeight> packed, at::Tensor bias);
  at::Tensor forward(const at::Tensor& x);
  at::Tensor weight;  // undefined when packed
  at::Tensor bias;    // undefined when the layer has none
  std::shared_ptr<PackedWeight> packed;
  std::function<void(const at::Tensor&)> observer;  // sees the input when set (layer driver)
  // Holds `p` from now on (a dense weight is dropped), or the dense `w` (float, on the
  // module's device) when p is null.
  void replace(std::shared_ptr<PackedWeight> p, at::Tensor w);
};
TORCH_MODULE(Linear);

class EmbeddingImpl : public torch::nn::Module {
 public:
  // The table may be held in a narrower dtype than the compute dtype (float16 in quantized
  // models); looked-up rows are converted.
  EmbeddingImpl(at::Tensor weight, c10::ScalarType compute_dtype);
  at::Tensor forward(const at::Tensor& ids);
  at::Tensor weight;
  c10::ScalarType compute_dtype;
};
TORCH_MODULE(Embedding);

class LayerNormImpl : public torch::nn::Module {
 public:
  LayerNormImpl(at::Tensor weight, at::Tensor bias, int64_t dim);  // weight/bias undefined when not affine
  at::Tensor forward(const at::Tensor& x);
  at::Tensor weight;
  at::Tensor bias;
  int64_t dim;
};
TORCH_MODULE(LayerNorm);

class OptAttentionImpl : public torch::nn::Module {
 public:
  OptAttentionImpl(Linear k, Linear v, Linear q, Linear out, int64_t num_heads, double attention_dropout = 0.0);
  // mask: additive [B, 1, T, past + T]; k_cache / v_cache extended when non-null.
  at::Tensor forward(const at::Tensor& h, const at::Tensor& mask, at::Tensor* k_cache, at::Tensor* v_cache);
  Linear k_proj{nullptr}, v_proj{nullptr}, q_proj{nullptr}, out_proj{nullptr};
  int64_t num_heads;
  double attention_dropout;  // applied to the probabilities in training mode only
};
TORCH_MODULE(OptAttention);

class OptDecoderLayerImpl : public torch::nn::Module {
 public:
  OptDecoderLayerImpl(OptAttention attn, LayerNorm attn_ln, Linear fc1, Linear fc2, LayerNorm final_ln,
                      const OptConfig& config);
  at::Tensor forward(const at::Tensor& h, const at::Tensor& mask, at::Tensor* k_cache, at::Tensor* v_cache);
  OptAttention self_attn{nullptr};
  LayerNorm self_attn_layer_norm{nullptr};
  Linear fc1{nullptr}, fc2{nullptr};
  LayerNorm final_layer_norm{nullptr};
  bool pre_ln;
  std::string activation;
  double dropout;  // residual dropout in training mode only (transformers' OPTDecoderLayer)
};
TORCH_MODULE(OptDecoderLayer);

struct OptDecoderParts {
  Embedding embed_tokens{nullptr};
  Embedding embed_positions{nullptr};
  Linear project_out{nullptr};  // null unless word_embed_proj_dim != hidden_size
  Linear project_in{nullptr};
  LayerNorm final_layer_norm{nullptr};  // null for post-LN models
  std::vector<OptDecoderLayer> layers;
};

class OptDecoderImpl : public torch::nn::Module {
 public:
  OptDecoderImpl(OptDecoderParts parts, const OptConfig& config);
  // Returns the final hidden states [B, T, E].
  at::Tensor forward(const at::Tensor& ids, const at::Tensor& attention_mask, std::vector<at::Tensor>* k_cache,
                     std::vector<at::Tensor>* v_cache, int64_t past);
  // Hidden states entering layer 0 and the additive mask [B, 1, T, past + T].
  std::pair<at::Tensor, at::Tensor> embed(const at::Tensor& ids, const at::Tensor& attention_mask, int64_t past);
  Embedding embed_tokens{nullptr};
  Embedding embed_positions{nullptr};
  Linear project_out{nullptr};
  Linear project_in{nullptr};
  LayerNorm final_layer_norm{nullptr};
  torch::nn::ModuleList layers{nullptr};
  std::vector<OptDecoderLayer> layer_list;
};
TORCH_MODULE(OptDecoder);

class OptModelImpl : public torch::nn::Module {
 public:
  explicit OptModelImpl(OptDecoder decoder);
  OptDecoder decoder{nullptr};
};
TORCH_MODULE(OptModel);

class OptForCausalLMImpl : public torch::nn::Module {
 public:
  OptForCausalLMImpl(OptModel model, Linear lm_head);
  OptModel model{nullptr};
  Linear lm_head{nullptr};
};
TORCH_MODULE(OptForCausalLM);

}  // namespace llmc::model
