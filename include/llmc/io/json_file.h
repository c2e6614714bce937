// Reading files from strangers: regular files only, JSON with bounded size and nesting, and
// messages that quote at most a prefix of an offending value.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace llmc::io {

// Opens a file for reading and returns its descriptor. InputError (exit 3) when it is missing
// or not a regular file: a FIFO, socket, device or directory is refused before anything could
// block on it. Symbolic links are followed (hub-cache snapshots are links).
int open_regular_file(const std::string& path);

// Reads a whole regular file; InputError when it cannot, or when it is larger than max_bytes.
std::string read_text_file(const std::string& path, uint64_t max_bytes = UINT64_MAX);

// The first (at most) n bytes of a regular file.
std::string read_file_head(const std::string& path, size_t n);

// Limits on every JSON document llmc reads (config.json, tokenizer files, indexes,
// safetensors headers, recipes, trainer state, jsonl lines): its size in bytes and the depth
// of nested arrays and objects. Defaults 256 MiB and 64; the environment variables
// LLMC_MAX_JSON_BYTES and LLMC_MAX_JSON_DEPTH raise them.
struct JsonLimits {
  uint64_t max_bytes;
  int max_depth;
};
JsonLimits json_limits();

// Parses JSON text within json_limits(); InputError naming `source` for invalid JSON, a
// document too large or nested too deep.
nlohmann::json parse_json(std::string_view text, const std::string& source);

// read_text_file + parse_json.
nlohmann::json read_json_file(const std::string& path);

// Writes text to path via a temporary sibling and a rename.
void write_file_atomic(const std::string& path, const std::string& content);

}  // namespace llmc::io
