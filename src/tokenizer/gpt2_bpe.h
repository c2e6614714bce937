// Private: the GPT-2 byte-level BPE tokenizer.
#pragma once

#include <array>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "llmc/tokenizer/tokenizer.h"

namespace llmc::tokenizer {

class Gpt2Regex;

class Gpt2Bpe : public Tokenizer {
 public:
  Gpt2Bpe(const std::string& vocab_json, const std::string& merges_txt, const SpecialTokens& special);
  ~Gpt2Bpe() override;
  std::vector<int64_t> encode(const std::string& text, bool add_special_tokens) const override;
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const override;
  int64_t vocab_size() const override;
  std::string name() const override { return "gpt2_bpe"; }

 private:
  std::vector<int64_t> bpe(const std::string& token) const;
  std::vector<std::string> merge_symbols(const std::string& token) const;
  void encode_plain(const std::string& text, std::vector<int64_t>& out) const;

  std::unique_ptr<Gpt2Regex> regex_;
  std::unordered_map<std::string, int64_t> encoder_;
  std::vector<std::string> decoder_;
  std::unordered_map<std::string, int> ranks_;  // "first second" -> rank
  std::array<std::string, 256> byte_str_;
  std::map<uint32_t, uint8_t> byte_of_cp_;
  std::set<int64_t> special_ids_;
  std::vector<std::pair<std::string, int64_t>> special_strings_;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int64_t>> cache_;
};

}  // namespace llmc::tokenizer
