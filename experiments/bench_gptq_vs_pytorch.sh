#!/usr/bin/env bash
# GPTQ cost: llmc's `quantize --quantization_method gptq` (4 bits, group 128, true-sequential)
# against a plain PyTorch implementation of the same steps (experiments/gptq_pytorch_reference.py,
# Debian's python3-torch) on an opt-125m-shaped model with random float16 weights, 128
# calibration samples of 512 tokens, the same thread count; both rows in one invocation.
# Target: llmc <= 1.0x the PyTorch time. llmc's time is its whole command (loading,
# tokenizing, writing the output); the reference's is loading plus calibrating and quantizing.
#   experiments/bench_gptq_vs_pytorch.sh [threads] [samples]   (the issue's size: 128 samples)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
threads=${1:-$(nproc)}
samples=${2:-128}
source "$root/experiments/random_model.sh"
model=$(random_model opt-125m)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# 128 x 512 tokens of calibration text (the held-out Brown text, repeated as needed).
for _ in 1 2 3 4 5 6 7 8; do cat "$root/data/brown/heldout.txt"; done >"$out/calib.txt"
echo "machine: $(nproc) cores, $(date -u +%F), threads $threads, $samples samples x 512 tokens, commit $(git -C "$root" rev-parse --short HEAD)"
start=$(date +%s.%N)
"$root/build/apps/quantize" --model_name_or_path "$model" --output_dir "$out/gptq" --quantization_method gptq \
  --quantization_bits 4 --group_size 128 --calibration_file "$out/calib.txt" --num_calibration_samples "$samples" \
  --calibration_seq_len 512 --threads "$threads" --device cpu --quiet >/dev/null
llmc=$(echo "$(date +%s.%N) - $start" | bc)
ref=$(/usr/bin/python3 "$root/experiments/gptq_pytorch_reference.py" --model "$model" --samples "$samples" --seq_len 512 \
  --threads "$threads")
ref_s=$(echo "$ref" | /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin)['total_s'])")
echo "llmc quantize gptq (whole command): ${llmc} s"
echo "pytorch reference: $ref"
awk -v a="$llmc" -v b="$ref_s" 'BEGIN {printf "llmc / pytorch: %.2fx (target <= 1.0x)\n", a / b}'
