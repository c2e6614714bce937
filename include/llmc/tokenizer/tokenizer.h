// Tokenizers, chosen from the files in a model directory: GPT-2 byte-level BPE
// (vocab.json + merges.txt) or SentencePiece (tokenizer.model). Every special-token id is
// read from the files; none is hard-coded.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace llmc::tokenizer {

struct SpecialTokens {
  std::optional<int64_t> bos;
  std::optional<int64_t> eos;
  std::optional<int64_t> pad;
  std::optional<int64_t> unk;
  bool add_bos{false};  // tokenizer_config.json add_bos_token
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // add_special_tokens: prepend BOS when the tokenizer config says add_bos_token.
  // Throws InputError when text is not valid UTF-8.
  virtual std::vector<int64_t> encode(const std::string& text, bool add_special_tokens = true) const = 0;
  // Invalid UTF-8 produced by a partial byte sequence is replaced by U+FFFD.
  virtual std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens = true) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual std::string name() const = 0;
  const SpecialTokens& special() const { return special_; }

 protected:
  SpecialTokens special_;
};

// The tokenizer kinds of the registry (gpt2_bpe, sentencepiece) and the tokenizer_class values
// of tokenizer_config.json that select them.
std::vector<std::string> tokenizer_kinds();
std::vector<std::string> tokenizer_classes();

// Picks the tokenizer from tokenizer_config.json's tokenizer_class, else from the files
// present. InputError when the directory holds no usable tokenizer.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& dir);

// Trains a SentencePiece BPE tokenizer of (at most) vocab_size pieces on a text file and
// writes tokenizer.model, tokenizer_config.json (LlamaTokenizer: unk 0, bos 1, eos 2, pad 3,
// add_bos_token) and special_tokens_map.json into out_dir; returns it loaded.
std::unique_ptr<Tokenizer> train_sentencepiece(const std::string& text_file, int64_t vocab_size, const std::string& out_dir,
                                               uint64_t seed);

// GPT-2 byte-level BPE from explicit files (special tokens as given).
std::unique_ptr<Tokenizer> make_gpt2_tokenizer(const std::string& vocab_json, const std::string& merges_txt,
                                               const SpecialTokens& special);

// True when `text` is valid UTF-8.
bool is_valid_utf8(const std::string& text);
// Replaces each maximal invalid subsequence by U+FFFD (Python's errors="replace").
std::string sanitize_utf8(const std::string& bytes);

}  // namespace llmc::tokenizer
