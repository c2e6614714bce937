// Private: environment variables as strings ("" when unset).
#pragma once

#include <cstdlib>
#include <string>

namespace llmc::io {

inline std::string env_string(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::string(v) : std::string();
}

}  // namespace llmc::io
