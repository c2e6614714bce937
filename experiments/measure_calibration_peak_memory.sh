#!/usr/bin/env bash
# Peak resident memory of a calibrated quantize (gptq, 4 bits, group 128) on an opt-1.3b-shaped
# float16 checkpoint (random weights, about 2.6 GB, made once), against the input's size and the
# calibration activations of one layer (samples x seq_len x hidden_size float32, the hidden
# states the layer driver holds). GNU time -v "Maximum resident set size" counts mapped file
# pages too. Target: peak <= input size + one layer's activations.
#   experiments/measure_calibration_peak_memory.sh [samples] [seq_len]   (LLMC_SHAPE=opt-350m for a smaller model)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
samples=${1:-16}
seq_len=${2:-512}
source "$root/experiments/random_model.sh"
model=$(random_model "${LLMC_SHAPE:-opt-1.3b}")
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for _ in 1 2 3 4; do cat "$root/data/brown/heldout.txt"; done >"$out/calib.txt"
input=$(stat -c %s "$model/model.safetensors")
hidden=$(/usr/bin/python3 -c "import json; print(json.load(open('$model/config.json'))['hidden_size'])")
acts=$((samples * seq_len * hidden * 4))
/usr/bin/time -v "$root/build/apps/quantize" --model_name_or_path "$model" --output_dir "$out/gptq" \
  --quantization_method gptq --quantization_bits 4 --group_size 128 --calibration_file "$out/calib.txt" \
  --num_calibration_samples "$samples" --calibration_seq_len "$seq_len" --device cpu --quiet >/dev/null 2>"$out/time.txt"
rss_kb=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$out/time.txt")
wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$out/time.txt")
echo "machine: $(nproc) cores, $(date -u +%F), commit $(git -C "$root" rev-parse --short HEAD)"
echo "input model.safetensors: $input bytes; one layer's calibration activations ($samples x $seq_len x $hidden x 4): $acts bytes"
echo "quantize gptq: wall $wall, peak RSS $((rss_kb * 1024)) bytes"
awk -v r="$rss_kb" -v i="$input" -v a="$acts" 'BEGIN {printf "peak RSS / input: %.2fx; peak RSS / (input + activations): %.2fx (target <= 1)\n", r * 1024 / i, r * 1024 / (i + a)}'
