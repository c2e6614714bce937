// Private: SentencePiece (tokenizer.model) behind the Tokenizer interface, through the
// dlopen'ed plugin (see spm_plugin/spm_plugin.h for why).
#pragma once

#include <memory>

#include "llmc/tokenizer/tokenizer.h"

namespace llmc::tokenizer {

struct SpmApi;

class SentencePieceTokenizer : public Tokenizer {
 public:
  SentencePieceTokenizer(const std::string& model_path, const SpecialTokens& special);
  ~SentencePieceTokenizer() override;
  std::vector<int64_t> encode(const std::string& text, bool add_special_tokens) const override;
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const override;
  int64_t vocab_size() const override { return piece_size_; }
  std::string name() const override { return "sentencepiece"; }

 private:
  const SpmApi* api_;
  void* handle_{nullptr};
  int64_t piece_size_{0};
};

}  // namespace llmc::tokenizer
