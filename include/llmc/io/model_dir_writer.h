// The one writer of model directories (quantize, prune, distill's final model and its
// checkpoints): weights through the streaming safetensors writer (sharded past
// max_shard_bytes), config and other JSON files, the tokenizer and generation files of the
// input, and a completion marker (metrics.json, or a checkpoint's trainer_state.json) written
// last. Nothing appears at the final path until commit(); a writer destroyed without commit
// removes what it staged.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "llmc/io/state_dict.h"

namespace llmc::io {

class AtomicOutputDir;
class SafetensorsStreamWriter;

class ModelDirWriter {
 public:
  enum class Place {
    // Built in a hidden sibling and renamed into place by commit(). UsageError when the
    // directory exists and overwrite is false.
    kNewDirectory,
    // The directory exists and holds other things (distill's checkpoints): the files are built
    // in a hidden folder inside it and moved in one by one; earlier model weight files are
    // removed first so that two shardings never mix.
    kIntoDirectory,
  };

  ModelDirWriter(std::string final_dir, Place place, bool overwrite);
  ~ModelDirWriter();
  ModelDirWriter(const ModelDirWriter&) = delete;
  ModelDirWriter& operator=(const ModelDirWriter&) = delete;

  const std::string& final_dir() const { return final_; }
  // Where the files are built (for tools that read the staged model back, e.g. to evaluate it).
  const std::string& staging() const { return staging_; }

  // One weight tensor, appended to a spill file as it comes (memory: one tensor at a time).
  void add_tensor(const std::string& name, const at::Tensor& tensor);
  // Writes the added tensors as model.safetensors, or shards plus their index; returns the names.
  std::vector<std::string> finish_weights(uint64_t max_shard_bytes);
  // A JSON file (config.json, quantize_config.json, ...), pretty-printed.
  void write_json(const std::string& file, const nlohmann::json& content);
  // A whole safetensors file from tensors in memory (e.g. optimizer state).
  void write_safetensors(const std::string& file, const StateDict& tensors);
  // The tokenizer files and generation_config.json present in `from_dir`.
  void copy_side_files(const std::string& from_dir);
  // Bytes of the files staged so far: the model directory's size on disk without its marker.
  uint64_t staged_bytes() const;
  // Writes `marker` last and moves everything into place.
  void commit(const std::string& marker, const nlohmann::json& content);

  // Removes what killed writers left in `dir`: staging siblings of directories inside it whose
  // owner is gone, and an unfinished kIntoDirectory staging folder of `dir` itself.
  static void remove_abandoned(const std::string& dir);

 private:
  std::string final_;
  Place place_;
  std::string staging_;
  std::unique_ptr<AtomicOutputDir> dir_;  // kNewDirectory
  std::unique_ptr<SafetensorsStreamWriter> weights_;
  bool committed_{false};
};

}  // namespace llmc::io
