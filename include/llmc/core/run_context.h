// RunContext: what every library call needs to know about the run, resolved once at the
// edge (apps/) and passed down: device, compute dtype, seed, threads, cancellation.
#pragma once

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <atomic>
#include <cstdint>
#include <string>

namespace llmc {

struct RunContext {
  c10::Device device{c10::kCPU};
  c10::ScalarType dtype{c10::kFloat};  // compute dtype
  uint64_t seed{0};
  int threads{1};
  const std::atomic<bool>* cancel_flag{nullptr};  // set by the SIGINT/SIGTERM handler
  bool progress{true};                            // show progress on stderr
  // Loading on the CPU with float32 compute: Linear weights and the token embedding stored
  // as float16 stay float16 in memory (the products convert them exactly on the fly), so a
  // model being calibrated takes its file's size, not twice that.
  bool keep_16bit_weights{false};

  // Throws Cancelled when an interrupt was requested.
  void check_cancelled() const;
};

struct RunContextOptions {
  std::string device{"auto"};   // auto | cpu | cuda | cuda:N
  std::string dtype{"float32"}; // float32 | bfloat16 | float16
  int threads{0};               // 0 = all logical cores
  uint64_t seed{0};
};

// Resolves device and dtype, sets LibTorch's thread count and seeds its generators.
// Errors: UsageError for bad values (and float16 compute on CPU), ResourceError when CUDA
// is requested but absent.
RunContext make_run_context(const RunContextOptions& options);

// "float32" etc. <-> ScalarType. Throws UsageError on unknown names.
c10::ScalarType parse_dtype(const std::string& name);
std::string dtype_name(c10::ScalarType type);

}  // namespace llmc
