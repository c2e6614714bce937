#include "zip_reader.h"

#include <algorithm>

#include "llmc/core/error.h"
#include "llmc/core/options.h"

namespace llmc::io {

namespace {

constexpr uint32_t kEocdSig = 0x06054b50;
constexpr uint32_t kZip64LocatorSig = 0x07064b50;
constexpr uint32_t kZip64EocdSig = 0x06064b50;
constexpr uint32_t kCentralSig = 0x02014b50;
constexpr uint32_t kLocalSig = 0x04034b50;
constexpr uint64_t kEocdSize = 22;
constexpr uint64_t kCentralSize = 46;
constexpr uint64_t kLocalSize = 30;

uint64_t le(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

ZipReader::ZipReader(const std::string& path) : path_(path), map_(std::make_shared<MappedFile>(path)) {
  const uint8_t* d = map_->data();
  const uint64_t size = map_->size();
  auto bad = [&](const std::string& why) { return InputError(path_ + ": corrupt or truncated zip archive: " + why); };
  if (size < kEocdSize) throw bad("file is only " + std::to_string(size) + " bytes");

  // End of central directory: the last signature within the final 64 KiB + 22 bytes.
  uint64_t eocd = UINT64_MAX;
  const uint64_t lowest = size > kEocdSize + 65535 ? size - kEocdSize - 65535 : 0;
  for (uint64_t pos = size - kEocdSize + 1; pos-- > lowest;) {
    if (le(d + pos, 4) == kEocdSig) {
      eocd = pos;
      break;
    }
  }
  if (eocd == UINT64_MAX) throw bad("no end-of-central-directory record");
  uint64_t entries = le(d + eocd + 10, 2);
  uint64_t cd_size = le(d + eocd + 12, 4);
  uint64_t cd_offset = le(d + eocd + 16, 4);
  if (entries == 0xFFFF || cd_size == 0xFFFFFFFF || cd_offset == 0xFFFFFFFF) {
    if (eocd < 20 || le(d + eocd - 20, 4) != kZip64LocatorSig) throw bad("missing ZIP64 locator");
    const uint64_t z64 = le(d + eocd - 20 + 8, 8);
    if (z64 > size || size - z64 < 56 || le(d + z64, 4) != kZip64EocdSig) throw bad("bad ZIP64 end record");
    entries = le(d + z64 + 32, 8);
    cd_size = le(d + z64 + 40, 8);
    cd_offset = le(d + z64 + 48, 8);
  }
  if (cd_offset > size || cd_size > size - cd_offset) throw bad("central directory lies outside the file");
  if (entries > cd_size / kCentralSize) throw bad("central directory claims more entries than it can hold");

  uint64_t pos = cd_offset;
  const uint64_t cd_end = cd_offset + cd_size;
  for (uint64_t i = 0; i < entries; ++i) {
    if (cd_end - pos < kCentralSize || le(d + pos, 4) != kCentralSig) throw bad("bad central directory entry");
    const uint64_t method = le(d + pos + 10, 2);
    uint64_t comp = le(d + pos + 20, 4);
    uint64_t uncomp = le(d + pos + 24, 4);
    const uint64_t name_len = le(d + pos + 28, 2);
    const uint64_t extra_len = le(d + pos + 30, 2);
    const uint64_t comment_len = le(d + pos + 32, 2);
    uint64_t local = le(d + pos + 42, 4);
    if (cd_end - pos - kCentralSize < name_len + extra_len + comment_len) throw bad("central directory entry overruns");
    std::string name(reinterpret_cast<const char*>(d + pos + kCentralSize), name_len);
    // ZIP64 extended information: the fields that are saturated, in this order.
    const uint8_t* ex = d + pos + kCentralSize + name_len;
    for (uint64_t e = 0; e + 4 <= extra_len;) {
      const uint64_t id = le(ex + e, 2), len = le(ex + e + 2, 2);
      if (e + 4 + len > extra_len) throw bad("extra field overruns in '" + quote_prefix(name) + "'");
      if (id == 0x0001) {
        uint64_t f = e + 4;
        auto next = [&](uint64_t& field) {
          if (field != 0xFFFFFFFF) return;
          if (f + 8 > e + 4 + len) throw bad("short ZIP64 field in '" + quote_prefix(name) + "'");
          field = le(ex + f, 8);
          f += 8;
        };
        next(uncomp);
        next(comp);
        next(local);
      }
      e += 4 + len;
    }
    if (method != 0) throw InputError(path_ + ": zip record '" + quote_prefix(name) + "' is compressed (method " + std::to_string(method) + "); torch.save writes stored records only");
    if (comp != uncomp) throw bad("stored record '" + quote_prefix(name) + "' has different sizes");
    if (local > size || size - local < kLocalSize || le(d + local, 4) != kLocalSig) throw bad("bad local header for '" + quote_prefix(name) + "'");
    const uint64_t data_offset = local + kLocalSize + le(d + local + 26, 2) + le(d + local + 28, 2);
    if (data_offset > size || comp > size - data_offset) throw bad("record '" + quote_prefix(name) + "' runs past the end of the file");
    if (i == 0) first_name_ = name;
    records_[name] = ZipRecord{data_offset, comp};
    pos += kCentralSize + name_len + extra_len + comment_len;
  }
  if (entries == 0) throw bad("archive is empty");
}

const ZipRecord& ZipReader::record(const std::string& name) const {
  auto it = records_.find(name);
  if (it == records_.end()) throw InputError(path_ + ": zip archive has no record '" + quote_prefix(name) + "'");
  return it->second;
}

}  // namespace llmc::io
