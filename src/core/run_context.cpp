#include "llmc/core/run_context.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>

#include <dlfcn.h>

#include <thread>

#include "llmc/core/error.h"
#include "llmc/core/logging.h"

namespace llmc {

void RunContext::check_cancelled() const {
  if (cancel_flag != nullptr && cancel_flag->load()) throw Cancelled();
}

c10::ScalarType parse_dtype(const std::string& name) {
  if (name == "float32" || name == "fp32") return c10::kFloat;
  if (name == "bfloat16" || name == "bf16") return c10::kBFloat16;
  if (name == "float16" || name == "fp16") return c10::kHalf;
  throw UsageError("--dtype: expected float32, bfloat16 or float16, found '" + name + "'");
}

std::string dtype_name(c10::ScalarType type) {
  switch (type) {
    case c10::kFloat: return "float32";
    case c10::kBFloat16: return "bfloat16";
    case c10::kHalf: return "float16";
    case c10::kDouble: return "float64";
    default: return c10::toString(type);
  }
}

namespace {

c10::Device resolve_device(const std::string& spec) {
  if (spec == "cpu") return c10::Device(c10::kCPU);
  if (spec == "auto") {
    if (at::hasCUDA()) return c10::Device(c10::kCUDA, 0);
    log_info("--device auto: CUDA is not available, using the CPU");
    return c10::Device(c10::kCPU);
  }
  if (spec == "cuda" || spec.rfind("cuda:", 0) == 0) {
    int index = 0;
    if (spec.size() > 5) {
      const std::string digits = spec.substr(5);
      if (digits.empty() || digits.size() > 3 || digits.find_first_not_of("0123456789") != std::string::npos) {
        throw UsageError("--device: expected auto, cpu, cuda or cuda:N, found '" + spec + "'");
      }
      index = std::stoi(digits);
    }
    if (!at::hasCUDA()) {
      throw ResourceError("--device " + spec + ": CUDA was requested but is not available on this machine");
    }
    return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  throw UsageError("--device: expected auto, cpu, cuda or cuda:N, found '" + spec + "'");
}

// LibTorch's set_num_threads covers its own (OpenMP) pool only; the BLAS it calls for
// matrix products has a pool of its own. Size OpenBLAS's too when it is the BLAS in use.
void set_blas_threads(int threads) {
  using SetThreads = void (*)(int);
  if (auto fn = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) fn(threads);
}

}  // namespace

RunContext make_run_context(const RunContextOptions& options) {
  RunContext ctx;
  ctx.dtype = parse_dtype(options.dtype);
  ctx.device = resolve_device(options.device);
  if (ctx.device.is_cpu() && ctx.dtype == c10::kHalf) {
    throw UsageError(
        "--dtype float16 is not supported on the CPU (LibTorch has no CPU half kernels); "
        "use --dtype float32 or bfloat16 (float16 weights are upcast at load)");
  }
  if (options.threads < 0) throw UsageError("--threads: expected a positive number, found " + std::to_string(options.threads));
  int threads = options.threads;
  if (threads == 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  ctx.threads = threads;
  at::set_num_threads(threads);
  set_blas_threads(threads);
  ctx.seed = options.seed;
  at::manual_seed(options.seed);
  return ctx;
}

}  // namespace llmc
