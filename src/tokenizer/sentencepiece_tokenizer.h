// Private: SentencePiece (tokenizer.model) behind the Tokenizer interface.
#pragma once

#include <memory>

#include "llmc/tokenizer/tokenizer.h"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace llmc::tokenizer {

class SentencePieceTokenizer : public Tokenizer {
 public:
  SentencePieceTokenizer(const std::string& model_path, const SpecialTokens& special);
  ~SentencePieceTokenizer() override;
  std::vector<int64_t> encode(const std::string& text, bool add_special_tokens) const override;
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const override;
  int64_t vocab_size() const override;
  std::string name() const override { return "sentencepiece"; }
  std::optional<int64_t> piece_id(const std::string& piece) const;

 private:
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
};

}  // namespace llmc::tokenizer
