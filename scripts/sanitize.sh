#!/usr/bin/env bash
# The AddressSanitizer + UndefinedBehaviorSanitizer build of llmc and every test (the
# "sanitize" preset in CMakePresets.json, clang 15, into build-sanitize/), then the test suite
# under it. Any sanitizer report fails the run. To keep CI within 30 minutes, three CLI tests
# whose time goes to training and calibration loops (distill_cli_test, pipeline_cli_test,
# calib_cli_test: 3-8x slower under the sanitizers) run only in the plain build; the library
# code they drive runs here through distill_test, calib_test, report_test and the evaluate,
# quantize, prune and hostile-input CLI tests. The reruns of the decode tests with the scalar
# and AVX2 kernel sets (decode_kernels_*, vec_kernels_*, compare_kernels_scalar) also run only in the plain build; the
# decode path itself runs here in model_test. LLMC_SANITIZE_ALL=1 runs everything.
#   scripts/sanitize.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${LLMC_SANITIZE_BUILD_DIR:-$root/build-sanitize}
bash "$root/scripts/setup.sh" --sanitizers
cmake --preset sanitize -S "$root" -B "$build" >/dev/null
cmake --build "$build" -j "$(nproc)"
# LibTorch allocates process-lifetime state that LeakSanitizer would report at exit;
# everything else a sanitizer finds aborts the test.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$build"
if [ "${LLMC_SANITIZE_ALL:-0}" = 1 ]; then
  ctest --output-on-failure -j 2
else
  ctest --output-on-failure -j 2 -E '^(distill_cli_test|pipeline_cli_test|calib_cli_test|decode_kernels_.*|vec_kernels_.*|compare_kernels_.*)$'
fi
