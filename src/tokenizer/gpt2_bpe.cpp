// GPT-2 byte-level BPE: pre-tokenize with GPT-2's pattern (PCRE2, Unicode classes), map
// bytes to the printable code points of bytes_to_unicode, apply merges by rank.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <climits>
#include <queue>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>

#include "gpt2_bpe.h"
#include "llmc/core/error.h"
#include "llmc/core/logging.h"
#include "llmc/core/progress.h"
#include "llmc/io/json_file.h"

namespace llmc::tokenizer {

namespace {

// GPT-2's pattern, with \s spelled out as Unicode White_Space (what Python's `regex` and
// the Rust tokenizers use for \s).
constexpr const char* kWhite = "\\t\\n\\x{0B}\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}";

std::string gpt2_pattern() {
  const std::string s = std::string("[") + kWhite + "]";
  const std::string not_s = std::string("[^") + kWhite + "]";
  return "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" + std::string(kWhite) + "\\p{L}\\p{N}]+|" + s + "+(?!" + not_s +
         ")|" + s + "+";
}

std::string utf8_of(uint32_t cp) {
  std::string out;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return out;
}

}  // namespace

class Gpt2Regex {
 public:
  Gpt2Regex() {
    int err = 0;
    PCRE2_SIZE offset = 0;
    const std::string pattern = gpt2_pattern();
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.c_str()), PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                          &err, &offset, nullptr);
    if (code_ == nullptr) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof(msg));
      throw Error(std::string("GPT-2 pattern does not compile: ") + reinterpret_cast<char*>(msg));
    }
    pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);
  }
  ~Gpt2Regex() { pcre2_code_free(code_); }

  // Splits valid UTF-8 text into pre-tokens.
  std::vector<std::string> split(const std::string& text) const {
    std::vector<std::string> out;
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_, nullptr);
    PCRE2_SIZE start = 0;
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    while (start < text.size()) {
      const int rc = pcre2_match(code_, subject, text.size(), start, start == 0 ? 0 : PCRE2_NO_UTF_CHECK, md, nullptr);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {
        // Never drop the rest of a text silently (a match or JIT stack limit on a huge run).
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof(msg));
        pcre2_match_data_free(md);
        throw InputError("GPT-2 pre-tokenizer failed at byte " + std::to_string(start) + ": " +
                         reinterpret_cast<char*>(msg));
      }
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      if (ov[1] <= ov[0]) break;  // the pattern never matches empty; guard anyway
      out.emplace_back(text, ov[0], ov[1] - ov[0]);
      start = ov[1];
    }
    pcre2_match_data_free(md);
    return out;
  }

 private:
  pcre2_code* code_{nullptr};
};

Gpt2Bpe::Gpt2Bpe(const std::string& vocab_json, const std::string& merges_txt, const SpecialTokens& special)
    : regex_(std::make_unique<Gpt2Regex>()) {
  special_ = special;
  const nlohmann::json vocab = io::read_json_file(vocab_json);
  if (!vocab.is_object()) throw InputError(vocab_json + ": expected a JSON object mapping tokens to ids");
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0) {
      throw InputError(vocab_json + ": id of token '" + it.key().substr(0, 40) + "' is not a non-negative integer");
    }
    const int64_t id = it.value().get<int64_t>();
    // Ids index a table: bounded by the file (a real vocabulary numbers its tokens densely).
    const int64_t bound = 2 * static_cast<int64_t>(vocab.size()) + 1024;
    if (id >= bound) {
      throw InputError(vocab_json + ": id " + std::to_string(id) + " of token '" + it.key().substr(0, 40) + "' is beyond " +
                       std::to_string(bound) + " (twice the number of entries + 1024): ids must number the vocabulary");
    }
    encoder_[it.key()] = id;
    if (static_cast<size_t>(id) >= decoder_.size()) decoder_.resize(static_cast<size_t>(id) + 1);
    decoder_[static_cast<size_t>(id)] = it.key();
  }
  std::istringstream merges(io::read_text_file(merges_txt));
  std::string line;
  int rank = 0;
  int line_no = 0;
  while (std::getline(merges, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (line_no == 1 && line.rfind("#version", 0) == 0)) continue;
    const auto sp = line.find(' ');
    if (sp == std::string::npos || sp == 0 || sp + 1 >= line.size() || line.find(' ', sp + 1) != std::string::npos) {
      throw InputError(merges_txt + ":" + std::to_string(line_no) + ": expected two symbols separated by one space");
    }
    ranks_.emplace(line, rank++);
  }
  // bytes_to_unicode: printable bytes keep their code point, the rest get 256, 257, ...
  uint32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    const uint32_t cp = printable ? static_cast<uint32_t>(b) : next++;
    byte_str_[b] = utf8_of(cp);
    byte_of_cp_[cp] = static_cast<uint8_t>(b);
  }
  for (const auto* id : {&special_.bos, &special_.eos, &special_.pad, &special_.unk}) {
    if (id->has_value()) special_ids_.insert(**id);
  }
  for (int64_t id : special_ids_) {
    if (id >= 0 && static_cast<size_t>(id) < decoder_.size() && !decoder_[static_cast<size_t>(id)].empty()) {
      special_strings_.emplace_back(decoder_[static_cast<size_t>(id)], id);
    }
  }
}

Gpt2Bpe::~Gpt2Bpe() = default;

std::vector<int64_t> Gpt2Bpe::bpe(const std::string& token) const {
  {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = cache_.find(token);
    if (it != cache_.end()) return it->second;
  }
  std::vector<int64_t> ids;
  for (const auto& sym : merge_symbols(token)) {
    auto it = encoder_.find(sym);
    if (it == encoder_.end()) {
      if (!special_.unk) throw InputError("GPT-2 tokenizer: symbol '" + sym + "' is not in the vocabulary and there is no unk token");
      ids.push_back(*special_.unk);
    } else {
      ids.push_back(it->second);
    }
  }
  if (token.size() <= 256) {  // long pre-tokens are rare and would bloat the cache
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() > 500000) cache_.clear();
    cache_.emplace(token, ids);
  }
  return ids;
}

// The reference's loop: while some adjacent pair has a merge rank, take the lowest rank and
// merge every occurrence of that pair, left to right, in one pass. Done with a heap of
// (rank, position) and a linked list of symbols, so a pre-token of n bytes costs
// O(n log n) instead of O(n^2) (a 10 MB run of spaces is one pre-token). Pairs made by a pass
// join the heap after it, as the reference only sees them in its next pass.
std::vector<std::string> Gpt2Bpe::merge_symbols(const std::string& token) const {
  const size_t n = token.size();
  std::vector<std::string> sym(n);
  std::vector<size_t> next(n), prev(n);
  std::vector<bool> alive(n, true);
  constexpr size_t kNone = SIZE_MAX;
  for (size_t i = 0; i < n; ++i) {
    sym[i] = byte_str_[static_cast<unsigned char>(token[i])];
    next[i] = i + 1 < n ? i + 1 : kNone;
    prev[i] = i > 0 ? i - 1 : kNone;
  }
  using Entry = std::pair<int, size_t>;  // (rank, left symbol); ties: leftmost first
  std::priority_queue<Entry, std::vector<Entry>, std::greater<>> heap;
  auto rank_of = [&](size_t left) {
    if (left == kNone || next[left] == kNone) return INT_MAX;
    auto it = ranks_.find(sym[left] + " " + sym[next[left]]);
    return it == ranks_.end() ? INT_MAX : it->second;
  };
  std::vector<Entry> made;
  auto consider = [&](size_t left, std::vector<Entry>& into) {
    const int r = rank_of(left);
    if (r != INT_MAX) into.emplace_back(r, left);
  };
  for (size_t i = 0; i + 1 < n; ++i) consider(i, made);
  for (const auto& e : made) heap.push(e);
  while (!heap.empty()) {
    const int rank = heap.top().first;
    made.clear();
    while (!heap.empty() && heap.top().first == rank) {
      const size_t left = heap.top().second;
      heap.pop();
      if (!alive[left] || rank_of(left) != rank) continue;  // stale: merged away or changed
      const size_t right = next[left];
      sym[left] += sym[right];
      sym[right].clear();
      alive[right] = false;
      next[left] = next[right];
      if (next[right] != kNone) prev[next[right]] = left;
      if (prev[left] != kNone) consider(prev[left], made);
      consider(left, made);
    }
    for (const auto& e : made) heap.push(e);
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < n; ++i) {
    if (alive[i]) out.push_back(std::move(sym[i]));
  }
  return out;
}

void Gpt2Bpe::encode_plain(const std::string& text, std::vector<int64_t>& out) const {
  // Big texts (an eval or training file) show their progress in bytes.
  constexpr size_t kShowProgress = size_t{8} << 20;
  Progress progress("tokenize", static_cast<int64_t>(text.size()), text.size() >= kShowProgress && info_enabled(), "B");
  for (const auto& piece : regex_->split(text)) {
    const std::vector<int64_t> ids = bpe(piece);
    out.insert(out.end(), ids.begin(), ids.end());
    progress.advance(static_cast<int64_t>(piece.size()));
  }
  progress.finish();
}

std::vector<int64_t> Gpt2Bpe::encode(const std::string& text, bool add_special_tokens) const {
  if (!is_valid_utf8(text)) throw InputError("text to tokenize is not valid UTF-8");
  std::vector<int64_t> out;
  if (add_special_tokens && special_.add_bos && special_.bos) out.push_back(*special_.bos);
  // Special tokens written literally in the text stay whole (as in transformers).
  size_t pos = 0;
  while (pos < text.size()) {
    size_t best = std::string::npos;
    const std::pair<std::string, int64_t>* hit = nullptr;
    for (const auto& sp : special_strings_) {
      const size_t at = text.find(sp.first, pos);
      if (at != std::string::npos && (at < best || (at == best && sp.first.size() > hit->first.size()))) {
        best = at;
        hit = &sp;
      }
    }
    if (hit == nullptr) {
      encode_plain(text.substr(pos), out);
      break;
    }
    if (best > pos) encode_plain(text.substr(pos, best - pos), out);
    out.push_back(hit->second);
    pos = best + hit->first.size();
  }
  return out;
}

std::string Gpt2Bpe::decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  std::string bytes;
  for (int64_t id : ids) {
    if (skip_special_tokens && special_ids_.count(id)) continue;
    if (id < 0 || static_cast<size_t>(id) >= decoder_.size() || decoder_[static_cast<size_t>(id)].empty()) continue;
    const std::string& tok = decoder_[static_cast<size_t>(id)];
    if (special_ids_.count(id)) {
      bytes += tok;
      continue;
    }
    // Token strings are UTF-8 of bytes_to_unicode code points; map each back to its byte.
    for (size_t i = 0; i < tok.size();) {
      const auto c = static_cast<unsigned char>(tok[i]);
      uint32_t cp;
      size_t n;
      if (c < 0x80) { cp = c; n = 1; }
      else if ((c & 0xE0) == 0xC0 && i + 1 < tok.size()) { cp = ((c & 0x1Fu) << 6) | (tok[i + 1] & 0x3F); n = 2; }
      else if ((c & 0xF0) == 0xE0 && i + 2 < tok.size()) {
        cp = ((c & 0x0Fu) << 12) | ((tok[i + 1] & 0x3Fu) << 6) | (tok[i + 2] & 0x3F);
        n = 3;
      } else { cp = 0xFFFFFFFF; n = 1; }
      auto it = byte_of_cp_.find(cp);
      if (it != byte_of_cp_.end()) bytes += static_cast<char>(it->second);
      else bytes.append(tok, i, n);  // added tokens that are not byte-level
      i += n;
    }
  }
  return sanitize_utf8(bytes);
}

int64_t Gpt2Bpe::vocab_size() const { return static_cast<int64_t>(decoder_.size()); }

std::unique_ptr<Tokenizer> make_gpt2_tokenizer(const std::string& vocab_json, const std::string& merges_txt,
                                               const SpecialTokens& special) {
  return std::make_unique<Gpt2Bpe>(vocab_json, merges_txt, special);
}

}  // namespace llmc::tokenizer
