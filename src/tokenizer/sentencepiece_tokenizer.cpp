#include "sentencepiece_tokenizer.h"

#include <sentencepiece_processor.h>

#include "llmc/core/error.h"

namespace llmc::tokenizer {

SentencePieceTokenizer::SentencePieceTokenizer(const std::string& model_path, const SpecialTokens& special)
    : sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {
  const auto status = sp_->Load(model_path);
  if (!status.ok()) throw InputError(model_path + ": cannot load SentencePiece model: " + status.ToString());
  special_ = special;
  auto fill = [&](std::optional<int64_t>& slot, int id) {
    if (!slot && id >= 0) slot = id;
  };
  fill(special_.bos, sp_->bos_id());
  fill(special_.eos, sp_->eos_id());
  fill(special_.pad, sp_->pad_id());
  fill(special_.unk, sp_->unk_id());
}

SentencePieceTokenizer::~SentencePieceTokenizer() = default;

std::vector<int64_t> SentencePieceTokenizer::encode(const std::string& text, bool add_special_tokens) const {
  if (!is_valid_utf8(text)) throw InputError("text to tokenize is not valid UTF-8");
  std::vector<int> ids;
  const auto status = sp_->Encode(text, &ids);
  if (!status.ok()) throw InputError("SentencePiece encode failed: " + status.ToString());
  std::vector<int64_t> out;
  if (add_special_tokens && special_.add_bos && special_.bos) out.push_back(*special_.bos);
  out.insert(out.end(), ids.begin(), ids.end());
  return out;
}

std::string SentencePieceTokenizer::decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  std::vector<int> kept;
  for (int64_t id : ids) {
    if (id < 0 || id >= sp_->GetPieceSize()) continue;
    if (skip_special_tokens && (sp_->IsControl(static_cast<int>(id)) || id == special_.pad || id == special_.bos || id == special_.eos)) continue;
    kept.push_back(static_cast<int>(id));
  }
  std::string text;
  const auto status = sp_->Decode(kept, &text);
  if (!status.ok()) throw InputError("SentencePiece decode failed: " + status.ToString());
  return sanitize_utf8(text);
}

int64_t SentencePieceTokenizer::vocab_size() const { return sp_->GetPieceSize(); }

std::optional<int64_t> SentencePieceTokenizer::piece_id(const std::string& piece) const {
  const int id = sp_->PieceToId(piece);
  if (id < 0 || (id == sp_->unk_id() && piece != sp_->IdToPiece(sp_->unk_id()))) return std::nullopt;
  return id;
}

}  // namespace llmc::tokenizer
