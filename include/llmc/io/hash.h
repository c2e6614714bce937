// SHA-256 (OpenSSL EVP): of a byte string and of a file read in 1 MiB pieces; hex digests.
#pragma once

#include <string>

namespace llmc::io {

std::string sha256_hex(const std::string& data);
std::string sha256_file(const std::string& path);

}  // namespace llmc::io
