// OPTConfig (docs/formats.md §1.1): every field transformers reads, with its defaults.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>

namespace llmc::model {

// A checkpoint key in the form llmc uses: "decoder.*" (opt-350m, 6.7b+) becomes
// "model.decoder.*"; "model.decoder.*" and "lm_head.weight" stay as they are.
std::string canonical_key(const std::string& key);

struct OptConfig {
  int64_t vocab_size{50272};
  int64_t hidden_size{768};
  int64_t num_hidden_layers{12};
  int64_t ffn_dim{3072};
  int64_t max_position_embeddings{2048};
  int64_t num_attention_heads{12};
  int64_t word_embed_proj_dim{768};  // defaults to hidden_size
  bool do_layer_norm_before{true};
  bool remove_final_layer_norm{false};  // _remove_final_layer_norm
  bool enable_bias{true};
  bool layer_norm_elementwise_affine{true};
  bool tie_word_embeddings{true};  // lm_head shares embed_tokens' weight (PretrainedConfig default)
  std::string activation_function{"relu"};
  double dropout{0.1};            // residual dropout while training (after attention and after fc2)
  double attention_dropout{0.0};  // on the attention probabilities while training
  double init_std{0.02};          // normal(0, init_std) initialisation of a fresh model
  std::optional<int64_t> pad_token_id;
  std::optional<int64_t> bos_token_id;
  std::optional<int64_t> eos_token_id;
  std::string torch_dtype;  // "torch_dtype" or "dtype"; empty when absent

  bool has_final_layer_norm() const { return do_layer_norm_before && !remove_final_layer_norm; }
  bool has_projections() const { return word_embed_proj_dim != hidden_size; }
  int64_t head_dim() const { return hidden_size / num_attention_heads; }

  // Parses config.json content; `source` names the file in errors. Throws InputError for a
  // missing or ill-typed required field, inconsistent sizes or an unsupported activation.
  static OptConfig from_json(const nlohmann::json& j, const std::string& source);
};

}  // namespace llmc::model
