// Shared by the libFuzzer harnesses: inputs as files (the parsers read paths), and the rule
// that a typed llmc error is an answer while anything else (a crash, an exception that would
// end as exit 1) is a finding.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "llmc/core/error.h"

namespace llmc::fuzz {

// A memory-backed regular file, rewritten for each input; its path is /proc/self/fd/N.
class InputFile {
 public:
  InputFile() : fd_(::memfd_create("llmc-fuzz", 0)) {
    if (fd_ < 0) std::abort();
  }
  std::string write(const uint8_t* data, size_t size) {
    if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, data, size, 0) != static_cast<ssize_t>(size)) std::abort();
    return "/proc/self/fd/" + std::to_string(fd_);
  }

 private:
  int fd_;
};

// Runs body; llmc's typed errors are expected answers to bad input; anything else aborts.
template <class F>
void expect_only_llmc_errors(F&& body) {
  try {
    body();
  } catch (const llmc::Error& e) {
    if (e.code() == ExitCode::kInternal) {
      std::fprintf(stderr, "internal error (exit 1) on fuzz input: %s\n", e.what());
      std::abort();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "untyped exception (would be exit 1): %s\n", e.what());
    std::abort();
  }
}

}  // namespace llmc::fuzz
