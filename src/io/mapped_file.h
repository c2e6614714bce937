// A read-only file mapped copy-on-write (tensors over it can be edited without touching
// the file). Private to llmc::io.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace llmc::io {

// Whether [begin, begin + nbytes) lies inside one live MappedFile.
bool in_file_mapping(const void* begin, uint64_t nbytes);

class MappedFile {
 public:
  // InputError when the file cannot be opened or mapped.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }

 private:
  uint8_t* data_{nullptr};
  uint64_t size_{0};
};

}  // namespace llmc::io
