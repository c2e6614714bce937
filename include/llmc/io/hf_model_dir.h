// Hugging Face model directories and the local Hugging Face cache. docs/formats.md §1, §4.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "llmc/io/state_dict.h"

namespace llmc::io {

// $HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface.
std::string hf_home_dir();

// The hub cache root: $HF_HUB_CACHE, else $HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub,
// else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub.
std::string hf_hub_cache_dir();

// A model argument: an existing directory is that directory; otherwise a hub id looked up
// in the cache at `revision` (a branch/tag name or a commit). InputError (exit 3) listing
// the places looked in when neither.
std::string resolve_model_dir(const std::string& model_arg, const std::string& revision = "main");

// The weight file names llmc looks for, in the order transformers prefers.
const std::vector<std::string>& weight_file_names();

// The weight files of a model directory, in the order transformers prefers: model.safetensors,
// sharded safetensors (index), pytorch_model.bin, sharded .bin (index).
std::vector<std::string> weight_files(const std::string& dir);

// All tensors of a model directory, loaded from weight_files(dir).
StateDict load_weights(const std::string& dir);

// Copies the tokenizer files and generation_config.json of a model directory (those present).
void copy_model_side_files(const std::string& from_dir, const std::string& to_dir);

// Sum of the sizes of the regular files directly in dir (following links; subdirectories such
// as checkpoint-N/ are not counted), excluding the names given.
uint64_t directory_size_bytes(const std::string& dir, const std::vector<std::string>& exclude = {"metrics.json"});

}  // namespace llmc::io
