// A minimal, strict reader for the uncompressed ZIP archives torch.save writes
// (docs/formats.md §3): central directory (with ZIP64), stored records only, every offset and
// size checked against the file before use; record data is served from a memory map.
// Private to llmc::io.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "mapped_file.h"

namespace llmc::io {

struct ZipRecord {
  uint64_t data_offset{0};
  uint64_t size{0};
};

class ZipReader {
 public:
  // InputError naming the file when it is not a readable, complete, stored-only ZIP.
  explicit ZipReader(const std::string& path);

  const std::string& path() const { return path_; }
  const std::string& first_name() const { return first_name_; }
  bool has(const std::string& name) const { return records_.count(name) != 0; }
  const ZipRecord& record(const std::string& name) const;  // InputError when absent
  const uint8_t* data(const ZipRecord& r) const { return map_->data() + r.data_offset; }
  const std::shared_ptr<MappedFile>& mapping() const { return map_; }

 private:
  std::string path_;
  std::shared_ptr<MappedFile> map_;
  std::string first_name_;
  std::map<std::string, ZipRecord> records_;
};

}  // namespace llmc::io
