// Typed errors and the exit codes they map to (README "Exit codes").
// Library code throws these; exactly one function in apps/ turns them into exit codes.
#pragma once

#include <stdexcept>
#include <string>

namespace llmc {

enum class ExitCode : int {
  kOk = 0,
  kInternal = 1,     // a bug or an unexpected library failure
  kUsage = 2,        // bad flag or value, inputs that cannot be combined
  kInput = 3,        // missing, corrupt, inaccessible or unsupported model or file
  kResource = 4,     // CUDA absent, out of memory, disk full, network unreachable
  kInterrupted = 130 // SIGINT / SIGTERM
};

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
  virtual ExitCode code() const { return ExitCode::kInternal; }
  virtual const char* kind() const { return "internal error"; }
};

class UsageError : public Error {
 public:
  using Error::Error;
  ExitCode code() const override { return ExitCode::kUsage; }
  const char* kind() const override { return "usage error"; }
};

class InputError : public Error {
 public:
  using Error::Error;
  ExitCode code() const override { return ExitCode::kInput; }
  const char* kind() const override { return "bad input"; }
};

class ResourceError : public Error {
 public:
  using Error::Error;
  ExitCode code() const override { return ExitCode::kResource; }
  const char* kind() const override { return "resource error"; }
};

class Cancelled : public Error {
 public:
  Cancelled() : Error("interrupted") {}
  ExitCode code() const override { return ExitCode::kInterrupted; }
  const char* kind() const override { return "interrupted"; }
};

}  // namespace llmc
