#!/usr/bin/env bash
# What `evaluate --compare_to` costs against a plain perplexity run of the compressed model,
# in one invocation, on a random-weight opt-125m-shaped model (float16 file, computed in
# float32) and its NF4 quantization, over the first KBYTES of data/brown/heldout.txt in
# windows of 2048 (the default), at THREADS threads. Rows, REPEATS alternating runs each,
# medians of evaluate's own elapsed_s (the model loads included):
#   plain      evaluate --eval_file              (the compressed model alone)
#   model      evaluate --compare_to BASE_DIR    (both models loaded; targets: <= 2.2x plain)
#   save       evaluate --save_logits FILE       (the base, once; file size per token)
#   file       evaluate --compare_to FILE        (targets: <= 1.3x plain)
#   experiments/bench_compare_cost.sh [THREADS] [REPEATS] [KBYTES]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
threads=${1:-2}
repeats=${2:-3}
kbytes=${3:-40}
bin="$root/build/apps"
. "$root/experiments/random_model.sh"
base=$(random_model opt-125m float16)
nf4=$(random_nf4_model opt-125m)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
head -c "$((kbytes * 1024))" "$root/data/brown/heldout.txt" | iconv -c -f utf-8 -t utf-8 >"$work/eval.txt"
common=(--threads "$threads" --quiet --json)
elapsed() { /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin)['elapsed_s'])"; }
"$bin/evaluate" --model_name_or_path "$base" --eval_file "$work/eval.txt" --save_logits "$work/base.logp" "${common[@]}" >"$work/save.json"
declare -A t
for _ in $(seq "$repeats"); do
  t[plain]+="$("$bin/evaluate" --model_name_or_path "$nf4" --eval_file "$work/eval.txt" "${common[@]}" | elapsed) "
  t[model]+="$("$bin/evaluate" --model_name_or_path "$nf4" --eval_file "$work/eval.txt" --compare_to "$base" "${common[@]}" | elapsed) "
  t[file]+="$("$bin/evaluate" --model_name_or_path "$nf4" --compare_to "$work/base.logp" "${common[@]}" | elapsed) "
  rm -f "$work/again.logp"
  t[save]+="$("$bin/evaluate" --model_name_or_path "$base" --eval_file "$work/eval.txt" --save_logits "$work/again.logp" "${common[@]}" | elapsed) "
done
/usr/bin/python3 - "$work/save.json" "${t[plain]}" "${t[model]}" "${t[save]}" "${t[file]}" "$threads" "$repeats" <<'PY'
import json, statistics, sys
save = json.load(open(sys.argv[1]))
med = [statistics.median(float(x) for x in a.split()) for a in sys.argv[2:6]]
plain, model, savet, filet = med
print(f"opt-125m shape, NF4 vs its float16 base, {save['predicted_tokens']} predicted tokens, "
      f"{sys.argv[6]} threads, medians of {sys.argv[7]} runs (elapsed_s, loads included)")
print(f"plain perplexity           {plain:8.1f} s  1.00x")
print(f"--compare_to the base dir  {model:8.1f} s  {model / plain:.2f}x  (target <= 2.2x)")
print(f"--compare_to the file      {filet:8.1f} s  {filet / plain:.2f}x  (target <= 1.3x)")
print(f"--save_logits (the base)   {savet:8.1f} s  {savet / plain:.2f}x")
print(f"file: {save['saved_logits']['bytes']} bytes, {save['saved_logits']['bytes_per_predicted_token']:.0f} per predicted token")
PY
