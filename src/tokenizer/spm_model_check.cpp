// Checks a SentencePiece model file before the SentencePiece library sees it. The library
// trusts the file: a normalizer character map whose trie points outside itself makes it read
// out of bounds, and fields it does not know (an unknown model type) are silently defaulted.
// The file is a protobuf ModelProto (google/sentencepiece src/sentencepiece_model.proto):
//   ModelProto     1 pieces (repeated message), 2 trainer_spec, 3 normalizer_spec,
//                  5 denormalizer_spec
//   TrainerSpec    3 model_type (1 unigram, 2 bpe, 3 word, 4 char), 40 unk_id, 41 bos_id,
//                  42 eos_id, 43 pad_id
//   NormalizerSpec 2 precompiled_charsmap: u32 trie size, a darts-clone double array of u32
//                  units, then the NUL-terminated replacement strings the leaves point into.
#include "spm_model_check.h"

#include <cstring>
#include <optional>
#include <vector>

#include "llmc/core/error.h"

namespace llmc::tokenizer {

namespace {

// A protobuf message's fields, read without trusting any length in it.
class WireReader {
 public:
  WireReader(const uint8_t* p, size_t n, std::string where) : p_(p), end_(p + n), where_(std::move(where)) {}

  struct Field {
    uint32_t number;
    uint32_t wire_type;
    uint64_t varint;  // wire types 0, 1, 5
    const uint8_t* data;  // wire type 2
    size_t size;
  };

  std::optional<Field> next() {
    if (p_ == end_) return std::nullopt;
    const uint64_t key = varint();
    Field f{static_cast<uint32_t>(key >> 3), static_cast<uint32_t>(key & 7), 0, nullptr, 0};
    if (f.number == 0 || (key >> 3) > 0x1FFFFFFF) fail("invalid field number");
    switch (f.wire_type) {
      case 0: f.varint = varint(); break;
      case 1: f.varint = fixed(8); break;
      case 5: f.varint = fixed(4); break;
      case 2: {
        const uint64_t len = varint();
        if (len > static_cast<uint64_t>(end_ - p_)) fail("a field's length runs past the end of its message");
        f.data = p_;
        f.size = static_cast<size_t>(len);
        p_ += len;
        break;
      }
      default: fail("unsupported protobuf wire type " + std::to_string(f.wire_type));
    }
    return f;
  }

  [[noreturn]] void fail(const std::string& what) const { throw InputError(where_ + ": not a valid SentencePiece model (" + what + ")"); }

 private:
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
      if (p_ == end_) fail("truncated varint");
      const uint8_t b = *p_++;
      if (shift == 63 && (b & 0x7E) != 0) fail("varint longer than 64 bits");
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if ((b & 0x80) == 0) return v;
    }
    fail("varint longer than 10 bytes");
  }
  uint64_t fixed(int n) {
    if (end_ - p_ < n) fail("truncated fixed-width field");
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | p_[i];
    p_ += n;
    return v;
  }

  const uint8_t* p_;
  const uint8_t* end_;
  std::string where_;
};

// The precompiled character map: every trie walk the normalizer can make from any input stays
// inside the array, and every leaf points at a NUL-terminated string inside the map.
void check_charsmap(const uint8_t* blob, size_t size, const WireReader& r, const char* which) {
  if (size == 0) return;  // no normalization map
  const std::string what = std::string(which) + " character map: ";
  if (size <= 4) r.fail(what + "shorter than its header");
  uint32_t trie_bytes = 0;
  std::memcpy(&trie_bytes, blob, 4);  // little-endian on every platform llmc builds for
  if (trie_bytes >= size - 4 || trie_bytes % 4 != 0 || trie_bytes == 0) r.fail(what + "trie size out of range");
  const size_t units = trie_bytes / 4;
  std::vector<uint32_t> a(units);
  std::memcpy(a.data(), blob + 4, trie_bytes);
  const uint8_t* normalized = blob + 4 + trie_bytes;
  const size_t normalized_size = size - 4 - trie_bytes;
  auto offset = [](uint32_t u) { return static_cast<size_t>((u >> 10) << ((u & (1u << 9)) >> 6)); };
  auto label = [](uint32_t u) { return u & ((1u << 31) | 0xFFu); };
  auto has_leaf = [](uint32_t u) { return ((u >> 8) & 1u) != 0; };
  // Breadth-first over the nodes a walk can reach; a walk reads a[base ^ c] for any byte c.
  std::vector<bool> seen(units, false);
  std::vector<size_t> todo = {0};
  seen[0] = true;
  while (!todo.empty()) {
    const size_t node = todo.back();
    todo.pop_back();
    const size_t base = node ^ offset(a[node]);
    if ((base | 0xFF) >= units) r.fail(what + "trie node points outside the map");
    if (has_leaf(a[node])) {
      const uint32_t value = a[base] & 0x7FFFFFFFu;
      if (value >= normalized_size || std::memchr(normalized + value, '\0', normalized_size - value) == nullptr) {
        r.fail(what + "replacement outside the map or not terminated");
      }
    }
    for (uint32_t c = 0; c < 256; ++c) {
      const size_t child = base ^ c;
      if (label(a[child]) == c && !seen[child]) {
        seen[child] = true;
        todo.push_back(child);
      }
    }
  }
}

int64_t as_int32(uint64_t v) { return static_cast<int64_t>(static_cast<int32_t>(static_cast<uint32_t>(v))); }

}  // namespace

void check_sentencepiece_model(const std::string& bytes, const std::string& path) {
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  WireReader model(data, bytes.size(), path);
  int64_t pieces = 0;
  int64_t model_type = 1, unk = 0, bos = 1, eos = 2, pad = -1;
  while (auto f = model.next()) {
    if (f->number == 1 && f->wire_type == 2) {
      ++pieces;
      WireReader piece(f->data, f->size, path);
      while (piece.next()) {
      }
    } else if (f->number == 2 && f->wire_type == 2) {
      WireReader spec(f->data, f->size, path);
      while (auto t = spec.next()) {
        if (t->wire_type != 0) continue;
        if (t->number == 3) model_type = static_cast<int64_t>(t->varint);
        else if (t->number == 40) unk = as_int32(t->varint);
        else if (t->number == 41) bos = as_int32(t->varint);
        else if (t->number == 42) eos = as_int32(t->varint);
        else if (t->number == 43) pad = as_int32(t->varint);
      }
    } else if ((f->number == 3 || f->number == 5) && f->wire_type == 2) {
      WireReader spec(f->data, f->size, path);
      while (auto n = spec.next()) {
        if (n->number == 2 && n->wire_type == 2) {
          check_charsmap(n->data, n->size, model, f->number == 3 ? "normalizer" : "denormalizer");
        }
      }
    }
  }
  if (pieces == 0) model.fail("no pieces");
  if (model_type < 1 || model_type > 4) {
    model.fail("unknown model_type " + std::to_string(model_type) + "; known: 1 unigram, 2 bpe, 3 word, 4 char");
  }
  if (unk < 0 || unk >= pieces) model.fail("unk_id " + std::to_string(unk) + " is not among the " + std::to_string(pieces) + " pieces");
  for (const auto& [name, id] : {std::pair<const char*, int64_t>{"bos_id", bos}, {"eos_id", eos}, {"pad_id", pad}}) {
    if (id < -1 || id >= pieces) model.fail(std::string(name) + " " + std::to_string(id) + " is beyond the " + std::to_string(pieces) + " pieces");
  }
}

}  // namespace llmc::tokenizer
