#!/usr/bin/env bash
# Peak resident memory of `quantize` (GNU time -v "Maximum resident set size", mapped file
# pages included) on an opt-1.3b-shaped float16 checkpoint (random weights, about 2.6 GB,
# generated once), against the input's size. Target: <= 0.6x.
#   experiments/measure_quantize_peak_memory.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/experiments/random_model.sh"
model=$(random_model opt-1.3b)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
input=$(stat -c %s "$model/model.safetensors")
/usr/bin/time -v "$root/build/apps/quantize" --model_name_or_path "$model" --output_dir "$out/nf4" \
  --quantization_method bitsandbytes --quantization_bits 4 --quiet >/dev/null 2>"$out/time.txt"
rss_kb=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$out/time.txt")
wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$out/time.txt")
echo "machine: $(nproc) cores, $(date -u +%F); input model.safetensors: $input bytes"
echo "quantize (nf4, double quant): wall $wall, peak RSS $((rss_kb * 1024)) bytes"
awk -v r="$rss_kb" -v i="$input" 'BEGIN {printf "peak RSS / input size: %.2fx (target <= 0.6x)\n", r * 1024 / i}'
