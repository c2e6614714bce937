#pragma once

#include <nlohmann/json_fwd.hpp>

#include <string>

namespace llmc::io {

// Reads a JSON file; InputError naming the file when missing or not valid JSON.
nlohmann::json read_json_file(const std::string& path);

// Reads a whole file into memory; InputError when it cannot.
std::string read_text_file(const std::string& path);

// Writes text to path via a temporary sibling and a rename.
void write_file_atomic(const std::string& path, const std::string& content);

}  // namespace llmc::io
