#!/usr/bin/env bash
# Runs every libFuzzer harness (fuzz/) for a bounded time on seed corpora made from the test
# fixtures (scripts/fuzz_seeds.py) and any earlier findings. A crash, a sanitizer report, an
# untyped exception (which a tool would end as exit 1), a timeout or a memory blow-up fails,
# with the input kept under build-sanitize/fuzz-artifacts/<harness>/.
#   scripts/fuzz.sh [SECONDS_PER_HARNESS]   (default 30; CI runs 30, run longer by hand)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${LLMC_SANITIZE_BUILD_DIR:-$root/build-sanitize}
secs=${1:-30}
harnesses=(safetensors torch_zip pickle json_config recipe tokenizer eval_files)
bash "$root/scripts/setup.sh" --sanitizers
cmake --preset sanitize -S "$root" -B "$build" >/dev/null
cmake --build "$build" -j "$(nproc)" --target "${harnesses[@]/#/fuzz_}" llmc_spm
[ -f "$build/fixtures/STAMP" ] || bash "$root/scripts/make_test_fixtures.sh" "$build/fixtures" >/dev/null
corpus="$build/fuzz-corpus"
/usr/bin/python3 "$root/scripts/fuzz_seeds.py" "$corpus" "$root" "$build/fixtures"
# LibTorch allocates process-lifetime state that LeakSanitizer would report at exit.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=()
for h in "${harnesses[@]}"; do
  art="$build/fuzz-artifacts/$h"
  mkdir -p "$art"
  echo "fuzz_$h: ${secs}s" >&2
  if ! (cd "$art" && "$build/fuzz/fuzz_$h" "$corpus/$h" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -max_len=262144 -artifact_prefix="$art/" -print_final_stats=1 2>"$art/log.txt"); then
    failed+=("$h")
    tail -n 40 "$art/log.txt" >&2
  else
    grep -E "^stat::number_of_executed_units|^stat::new_units_added" "$art/log.txt" | sed "s/^/  /" >&2
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: findings in ${failed[*]} (inputs in $build/fuzz-artifacts/)" >&2
  exit 1
fi
echo "fuzz: ${#harnesses[@]} harnesses, ${secs}s each, no finding" >&2
