#include "llmc/model/opt_config.h"

#include <nlohmann/json.hpp>
#include <set>

#include "llmc/core/error.h"
#include "llmc/io/json_fields.h"

namespace llmc::model {

namespace {

int64_t positive(const nlohmann::json& j, const std::string& key, const std::string& source) {
  const int64_t v = io::json_required<int64_t>(j, key, source);
  if (v <= 0) throw InputError(source + ": field '" + key + "' must be a positive integer, found " + std::to_string(v));
  return v;
}

std::optional<int64_t> optional_id(const nlohmann::json& j, const std::string& key, const std::string& source) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  return io::json_required<int64_t>(j, key, source);
}

}  // namespace

std::string canonical_key(const std::string& key) {
  return key.rfind("decoder.", 0) == 0 ? "model." + key : key;
}

OptConfig OptConfig::from_json(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object()) throw InputError(source + ": expected a JSON object");
  OptConfig c;
  c.vocab_size = positive(j, "vocab_size", source);
  // Very old configs call hidden_size d_model.
  c.hidden_size = j.contains("hidden_size") || !j.contains("d_model") ? positive(j, "hidden_size", source)
                                                                       : positive(j, "d_model", source);
  c.num_hidden_layers = positive(j, "num_hidden_layers", source);
  c.ffn_dim = positive(j, "ffn_dim", source);
  c.max_position_embeddings = positive(j, "max_position_embeddings", source);
  c.num_attention_heads = positive(j, "num_attention_heads", source);
  c.word_embed_proj_dim = io::json_field<int64_t>(j, "word_embed_proj_dim", c.hidden_size, source);
  if (c.word_embed_proj_dim <= 0) throw InputError(source + ": 'word_embed_proj_dim' must be positive");
  c.do_layer_norm_before = io::json_field<bool>(j, "do_layer_norm_before", true, source);
  c.remove_final_layer_norm = io::json_field<bool>(j, "_remove_final_layer_norm", false, source);
  c.enable_bias = io::json_field<bool>(j, "enable_bias", true, source);
  c.layer_norm_elementwise_affine = io::json_field<bool>(j, "layer_norm_elementwise_affine", true, source);
  c.tie_word_embeddings = io::json_field<bool>(j, "tie_word_embeddings", true, source);
  c.activation_function = io::json_field<std::string>(j, "activation_function", "relu", source);
  c.dropout = io::json_field<double>(j, "dropout", 0.1, source);
  c.attention_dropout = io::json_field<double>(j, "attention_dropout", 0.0, source);
  c.init_std = io::json_field<double>(j, "init_std", 0.02, source);
  if (!(c.dropout >= 0.0 && c.dropout < 1.0) || !(c.attention_dropout >= 0.0 && c.attention_dropout < 1.0)) {
    throw InputError(source + ": dropout and attention_dropout must be in [0, 1)");
  }
  if (!(c.init_std > 0.0)) throw InputError(source + ": init_std must be positive");
  c.pad_token_id = optional_id(j, "pad_token_id", source);
  c.bos_token_id = optional_id(j, "bos_token_id", source);
  c.eos_token_id = optional_id(j, "eos_token_id", source);
  c.torch_dtype = io::json_field<std::string>(j, "torch_dtype", io::json_field<std::string>(j, "dtype", "", source), source);
  if (c.hidden_size % c.num_attention_heads != 0) {
    throw InputError(source + ": hidden_size " + std::to_string(c.hidden_size) + " is not divisible by num_attention_heads " +
                     std::to_string(c.num_attention_heads));
  }
  static const std::set<std::string> kActivations = {"relu", "gelu", "gelu_new", "gelu_pytorch_tanh", "silu", "swish"};
  if (!kActivations.count(c.activation_function)) {
    throw InputError(source + ": unsupported activation_function '" + c.activation_function +
                     "' (supported: relu, gelu, gelu_new, gelu_pytorch_tanh, silu)");
  }
  return c;
}

}  // namespace llmc::model
