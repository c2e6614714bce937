// Shared helpers for the GoogleTest binaries: where fixtures live, a CPU run context,
// temporary directories.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "llmc/core/run_context.h"

namespace llmc::test {

// Made by the CTest fixture "fixtures" (scripts/make_fixtures.py); LLMC_FIXTURES points at it.
inline std::string fixtures() {
  const char* dir = std::getenv("LLMC_FIXTURES");
  if (dir == nullptr) throw std::runtime_error("LLMC_FIXTURES is not set; run the tests through ctest");
  return dir;
}

inline std::string fixture(const std::string& rel) { return (std::filesystem::path(fixtures()) / rel).string(); }

inline RunContext cpu_context(c10::ScalarType dtype = c10::kFloat) {
  RunContextOptions o;
  o.device = "cpu";
  o.dtype = dtype == c10::kFloat ? "float32" : "bfloat16";
  o.threads = 2;
  RunContext ctx = make_run_context(o);
  ctx.progress = false;
  return ctx;
}

// A fresh directory removed at scope exit.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "llmc-test-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& rel) const { return (std::filesystem::path(path_) / rel).string(); }

 private:
  std::string path_;
};

// Runs `fn` and checks it throws ErrorT whose message contains `needle`.
template <class ErrorT, class Fn>
void expect_error(Fn&& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "expected an error containing '" << needle << "'";
  } catch (const ErrorT& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message: " << e.what();
  }
}

}  // namespace llmc::test
