// safetensors reading (memory-mapped, fully validated before any data is touched) and
// writing (the reference writer's layout). docs/formats.md §2.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "llmc/io/state_dict.h"

namespace llmc::io {

struct SafetensorsEntry {
  std::string name;
  std::string dtype;  // "F32", "BF16", ...
  std::vector<int64_t> shape;
  uint64_t begin{0};  // offsets into the data buffer
  uint64_t end{0};
};

class MappedFile;

class SafetensorsFile {
 public:
  // Maps and validates the file; throws InputError naming the file (and tensor) on any
  // violation of docs/formats.md §2.
  static SafetensorsFile open(const std::string& path);

  const std::string& path() const { return path_; }
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(const std::string& name) const;

  // A CPU tensor over the mapped data (copy-on-write mapping: editing it does not touch
  // the file). Copied into aligned memory when the data is not aligned for its dtype.
  // Throws InputError for dtypes LibTorch cannot represent.
  at::Tensor tensor(const std::string& name) const;
  StateDict load_all() const;

 private:
  std::string path_;
  std::shared_ptr<MappedFile> map_;
  uint64_t data_start_{0};
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// The safetensors dtype string for a LibTorch dtype; throws UsageError if none.
std::string safetensors_dtype(c10::ScalarType type);

// Writes one file: tensors ordered by dtype alignment (largest first) then name, header
// padded with spaces to a multiple of 8, metadata {"format": "pt"} unless given.
// Tensors must not share storage; non-contiguous tensors are made contiguous.
void save_safetensors(const std::string& path, const StateDict& tensors,
                      const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// Writes safetensors without holding the tensors: add() appends each tensor's bytes to a
// spill file as it comes; finish() writes the header (reference order: dtype alignment,
// then name) and copies the bytes into the final file(s) (`model.safetensors`, or shards of
// at most max_shard_bytes plus the index). Peak memory: one tensor at a time.
class SafetensorsStreamWriter {
 public:
  explicit SafetensorsStreamWriter(std::string spill_path);
  ~SafetensorsStreamWriter();
  SafetensorsStreamWriter(const SafetensorsStreamWriter&) = delete;
  SafetensorsStreamWriter& operator=(const SafetensorsStreamWriter&) = delete;

  void add(const std::string& name, const at::Tensor& tensor);
  // Returns the file names written into dir; removes the spill file.
  std::vector<std::string> finish(const std::string& dir, uint64_t max_shard_bytes);

 private:
  struct Item {
    std::string name;
    std::string dtype;
    std::vector<int64_t> shape;
    uint64_t spill_offset;
    uint64_t nbytes;
  };
  std::string spill_path_;
  int fd_{-1};
  uint64_t offset_{0};
  std::vector<Item> items_;
};

// Drops the resident pages behind a tensor that views a file mapping of a loaded checkpoint
// (they are read again from the file if touched); does nothing to any other tensor. The
// mapping is copy-on-write: values edited in place would go back to the file's. For
// streaming over big inputs.
void release_pages(const at::Tensor& t);

}  // namespace llmc::io
