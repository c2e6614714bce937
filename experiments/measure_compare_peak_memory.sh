#!/usr/bin/env bash
# Peak resident memory of `evaluate --compare_to` with two opt-1.3b-shaped models: the float16
# checkpoint (random weights, about 2.6 GB, made once) as the base and its NF4 quantization as
# the model, over the first KBYTES of data/brown/heldout.txt in windows of 2048; against a plain
# perplexity run of each alone. GNU time -v "Maximum resident set size" (mapped file pages
# count too). What should hold: the two are never both held in float32 (the base keeps its
# 16-bit weights, the NF4 model stays packed): compare's peak near the sum of the two plain
# runs' weights, well under two float32 copies (2 x 5.3 GB).
#   experiments/measure_compare_peak_memory.sh [KBYTES]   (LLMC_SHAPE=opt-350m for a smaller model)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
kbytes=${1:-12}
shape=${LLMC_SHAPE:-opt-1.3b}
source "$root/experiments/random_model.sh"
base=$(random_model "$shape")
nf4=$(random_nf4_model "$shape")
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
head -c "$((kbytes * 1024))" "$root/data/brown/heldout.txt" | iconv -c -f utf-8 -t utf-8 >"$out/eval.txt"
peak() {  # label, evaluate args...
  local label=$1
  shift
  /usr/bin/time -v "$root/build/apps/evaluate" "$@" --eval_file "$out/eval.txt" --quiet --json >"$out/m.json" 2>"$out/time.txt"
  local rss_kb wall
  rss_kb=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$out/time.txt")
  wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$out/time.txt")
  printf '%-34s peak RSS %6.2f GB  wall %s\n' "$label" "$(echo "$rss_kb / 1048576" | bc -l)" "$wall"
}
echo "machine: $(nproc) cores, $(date -u +%F), commit $(git -C "$root" rev-parse --short HEAD), shape $shape, ${kbytes} KB of text"
echo "files: base $(du -sh "$base" | cut -f1), nf4 $(du -sh "$nf4" | cut -f1)"
peak "base alone (float16 -> float32)" --model_name_or_path "$base"
peak "nf4 alone" --model_name_or_path "$nf4"
peak "nf4 --compare_to base" --model_name_or_path "$nf4" --compare_to "$base"
/usr/bin/python3 -c "import json; c=json.load(open('$out/m.json'))['compare']; print('compare: %d tokens, mean KL %.4g, top-1 %.4f' % (c['predicted_tokens'], c['kl_mean'], c['top1_agreement']))"
