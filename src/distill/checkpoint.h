// Private: distill's output directory: checkpoint-N/ folders (student weights as trained,
// optimizer state, trainer state) written atomically, found again, and thinned out; and the
// final model files.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "llmc/io/state_dict.h"

namespace llmc::distill {

struct Checkpoint {
  io::StateDict model;        // student parameters (training dtype)
  nlohmann::json config;      // student config.json
  io::StateDict optimizer;    // AdamW moments and extra trained tensors
  nlohmann::json state;       // trainer_state.json
  std::string tokenizer_dir;  // where to copy the tokenizer files from
};

// Writes output_dir/checkpoint-<step>/ atomically, then removes the oldest checkpoints beyond
// keep (0 = keep all). Returns the checkpoint's path.
std::string save_checkpoint(const std::string& output_dir, int64_t step, const Checkpoint& ckpt, int64_t keep);

// The checkpoint directories of output_dir, oldest first (complete ones only).
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& output_dir);

// "latest" -> the newest checkpoint of output_dir (nullopt when there is none); a path -> that
// path, InputError when it is not a complete checkpoint.
std::optional<std::string> resolve_checkpoint(const std::string& spec, const std::string& output_dir);

// Reads trainer_state.json and optimizer.safetensors of a checkpoint (the model is loaded as a
// model directory).
nlohmann::json read_trainer_state(const std::string& dir);
io::StateDict read_optimizer_state(const std::string& dir);

}  // namespace llmc::distill
