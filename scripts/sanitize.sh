#!/usr/bin/env bash
# The AddressSanitizer + UndefinedBehaviorSanitizer build of llmc and every test (the
# "sanitize" preset in CMakePresets.json, clang 15, into build-sanitize/), then the whole test
# suite under it. Any sanitizer report fails the run.
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
ctest --output-on-failure -j 2
