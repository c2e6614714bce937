// Tokenizer selection: a registry of tokenizer kinds, filled in one function, and the
// tokenizer_config.json / special_tokens_map.json reading shared by all kinds.
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "gpt2_bpe.h"
#include "llmc/core/error.h"
#include "llmc/core/registry.h"
#include "llmc/io/json_fields.h"
#include "llmc/io/json_file.h"
#include "sentencepiece_tokenizer.h"

namespace llmc::tokenizer {

namespace fs = std::filesystem;

namespace {

struct TokenizerConfig {
  nlohmann::json config = nlohmann::json::object();  // tokenizer_config.json
  nlohmann::json special_map = nlohmann::json::object();  // special_tokens_map.json
  std::string tokenizer_class;
  std::string config_path;  // for messages
};

// A special token entry is a string or an AddedToken object with "content".
std::optional<std::string> token_content(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return std::nullopt;
}

std::optional<std::string> special_content(const TokenizerConfig& cfg, const std::string& key) {
  if (cfg.config.contains(key)) {
    if (auto c = token_content(cfg.config[key])) return c;
  }
  if (cfg.special_map.contains(key)) return token_content(cfg.special_map[key]);
  return std::nullopt;
}

using Factory = std::function<std::unique_ptr<Tokenizer>(const std::string& dir, const TokenizerConfig& cfg)>;

std::unique_ptr<Tokenizer> make_gpt2(const std::string& dir, const TokenizerConfig& cfg) {
  const std::string vocab = (fs::path(dir) / "vocab.json").string();
  const std::string merges = (fs::path(dir) / "merges.txt").string();
  const nlohmann::json v = io::read_json_file(vocab);
  SpecialTokens special;
  auto lookup = [&](const std::string& key) -> std::optional<int64_t> {
    auto content = special_content(cfg, key);
    if (!content) return std::nullopt;
    if (!v.is_object() || !v.contains(*content) || !v[*content].is_number_integer()) {
      throw InputError(dir + ": special token " + key + " '" + *content + "' is not in vocab.json");
    }
    return v[*content].get<int64_t>();
  };
  special.bos = lookup("bos_token");
  special.eos = lookup("eos_token");
  special.pad = lookup("pad_token");
  special.unk = lookup("unk_token");
  special.add_bos = io::json_field<bool>(cfg.config, "add_bos_token", false, cfg.config_path);
  return make_gpt2_tokenizer(vocab, merges, special);
}

std::unique_ptr<Tokenizer> make_sentencepiece(const std::string& dir, const TokenizerConfig& cfg) {
  SpecialTokens special;
  special.add_bos = io::json_field<bool>(cfg.config, "add_bos_token", true, cfg.config_path);
  auto tok = std::make_unique<SentencePieceTokenizer>((fs::path(dir) / "tokenizer.model").string(), special);
  return tok;
}

const Registry<Factory>& tokenizer_registry() {
  static const Registry<Factory> registry = [] {
    Registry<Factory> r("tokenizer");
    r.add("gpt2_bpe", make_gpt2);
    r.add("sentencepiece", make_sentencepiece);
    return r;
  }();
  return registry;
}

// tokenizer_class (transformers' names) -> registry kind.
const std::map<std::string, std::string>& class_kinds() {
  static const std::map<std::string, std::string> kinds = {
      {"GPT2Tokenizer", "gpt2_bpe"},        {"GPT2TokenizerFast", "gpt2_bpe"},
      {"LlamaTokenizer", "sentencepiece"},  {"LlamaTokenizerFast", "sentencepiece"},
      {"T5Tokenizer", "sentencepiece"},     {"T5TokenizerFast", "sentencepiece"},
  };
  return kinds;
}

std::string kind_for_class(const std::string& cls) {
  auto it = class_kinds().find(cls);
  return it == class_kinds().end() ? std::string() : it->second;
}

}  // namespace

std::vector<std::string> tokenizer_kinds() { return tokenizer_registry().names(); }

std::vector<std::string> tokenizer_classes() {
  std::vector<std::string> out;
  for (const auto& [cls, kind] : class_kinds()) out.push_back(cls);
  return out;
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& dir) {
  TokenizerConfig cfg;
  const fs::path d(dir);
  std::error_code ec;
  if (fs::exists(d / "tokenizer_config.json", ec)) cfg.config = io::read_json_file((d / "tokenizer_config.json").string());
  if (fs::exists(d / "special_tokens_map.json", ec)) {
    cfg.special_map = io::read_json_file((d / "special_tokens_map.json").string());
  }
  if (!cfg.config.is_object()) throw InputError((d / "tokenizer_config.json").string() + ": expected a JSON object");
  if (!cfg.special_map.is_object()) throw InputError((d / "special_tokens_map.json").string() + ": expected a JSON object");
  cfg.config_path = (d / "tokenizer_config.json").string();
  cfg.tokenizer_class = io::json_field<std::string>(cfg.config, "tokenizer_class", "", cfg.config_path);
  std::string kind = kind_for_class(cfg.tokenizer_class);
  if (kind.empty()) {
    if (fs::exists(d / "vocab.json", ec) && fs::exists(d / "merges.txt", ec)) kind = "gpt2_bpe";
    else if (fs::exists(d / "tokenizer.model", ec)) kind = "sentencepiece";
    else {
      throw InputError(dir + ": no tokenizer found (expected vocab.json + merges.txt, or tokenizer.model" +
                       (cfg.tokenizer_class.empty() ? std::string(")") : "; tokenizer_class '" + cfg.tokenizer_class + "' is not supported)"));
    }
  }
  return tokenizer_registry().get<InputError>(kind)(dir, cfg);
}

}  // namespace llmc::tokenizer
