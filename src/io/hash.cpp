#include "llmc/io/hash.h"

#include <openssl/evp.h>

#include <cstdio>
#include <fstream>
#include <functional>
#include <vector>

namespace llmc::io {

namespace {

// Runs `feed` with an update function over one digest; returns the hex digest.
std::string digest(const std::function<void(const std::function<void(const char*, size_t)>&)>& feed) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  feed([ctx](const char* p, size_t n) { EVP_DigestUpdate(ctx, p, n); });
  unsigned char md[32];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, md, &len);
  EVP_MD_CTX_free(ctx);
  std::string hex;
  char b[3];
  for (unsigned int i = 0; i < len; ++i) {
    std::snprintf(b, sizeof(b), "%02x", md[i]);
    hex += b;
  }
  return hex;
}

}  // namespace

std::string sha256_hex(const std::string& data) {
  return digest([&](const auto& update) { update(data.data(), data.size()); });
}

std::string sha256_file(const std::string& path) {
  return digest([&](const auto& update) {
    std::ifstream in(path, std::ios::binary);
    std::vector<char> buf(1 << 20);
    while (in) {
      in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
      if (in.gcount() > 0) update(buf.data(), static_cast<size_t>(in.gcount()));
    }
  });
}

}  // namespace llmc::io
