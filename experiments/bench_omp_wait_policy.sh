#!/usr/bin/env bash
# Compares two configurations in one run: `evaluate --threads 2` with libgomp's default
# (active, spinning) wait policy vs the passive policy llmc sets at start-up
# (apps/common/tool.cpp). Alternates the two, REPEATS times each, and prints the median
# elapsed seconds and their ratio. Needs the demo model (scripts/demo.sh).
#   experiments/bench_omp_wait_policy.sh [REPEATS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ev="$root/build/apps/evaluate"
model="$root/models/original/tiny-opt"
repeats=${1:-3}
text=$(mktemp)
trap 'rm -f "$text"' EXIT
head -c 60000 "$root/data/brown_news.txt" >"$text"
run() {  # prints elapsed_s
  env "$@" "$ev" --model_name_or_path "$model" --eval_file "$text" --max_length 128 --threads 2 --quiet --json |
    sed -n 's/.*"elapsed_s": \([0-9.]*\).*/\1/p'
}
active=()
passive=()
for _ in $(seq "$repeats"); do
  active+=("$(run LLMC_NO_REEXEC=1)")
  passive+=("$(run OMP_WAIT_POLICY=PASSIVE)")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ma=$(median "${active[@]}")
mp=$(median "${passive[@]}")
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)"
echo "active (libgomp default): ${active[*]} -> median ${ma}s"
echo "passive (llmc default):   ${passive[*]} -> median ${mp}s"
awk -v a="$ma" -v p="$mp" 'BEGIN {printf "speed-up of passive over active: %.2fx\n", a / p}'
