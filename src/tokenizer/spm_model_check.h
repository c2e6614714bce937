// Private: validation of a SentencePiece model's bytes before the library loads them.
#pragma once

#include <string>

namespace llmc::tokenizer {

// InputError naming `path` unless the bytes are a well-formed ModelProto with at least one
// piece, a known model type, unk/bos/eos/pad ids among the pieces (or -1), and normalizer
// character maps whose every trie walk stays inside them.
void check_sentencepiece_model(const std::string& bytes, const std::string& path);

}  // namespace llmc::tokenizer
