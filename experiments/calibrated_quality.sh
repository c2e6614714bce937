#!/usr/bin/env bash
# The calibrated methods against their baselines on the demo's trained model (run
# scripts/demo.sh first), every row with the same calibration (64 windows of 128 tokens of
# data/brown/train.txt drawn with seed 0): the mean over Linears of the output error
# ||(W - W')X||^2 / ||WX||^2 on the calibration inputs (metrics.json mean_output_error) and the
# held-out perplexity (evaluate, data/brown/heldout.txt, windows of 128). Writes
# experiments/calibrated_quality.md.
#   experiments/calibrated_quality.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/build/apps"
model="$root/experiments/demo/trained"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cal=(--calibration_file "$root/data/brown/train.txt" --num_calibration_samples 64 --calibration_seq_len 128 --seed 0)
q=(--device cpu --quiet)
start=$(date +%s)
rows=()
row() {  # name dir
  local err ppl size
  err=$(/usr/bin/python3 -c "import json; m = json.load(open('$2/metrics.json')); print('%.3g' % m.get('mean_output_error', float('nan')))")
  ppl=$("$bin/evaluate" --model_name_or_path "$2" --eval_file "$root/data/brown/heldout.txt" --max_length 128 --batch_size 8 \
    --json "${q[@]}" | /usr/bin/python3 -c "import json,sys; print('%.2f' % json.load(sys.stdin)['perplexity'])")
  size=$(du -sb --exclude=metrics.json "$2" | cut -f1)
  rows+=("| $1 | $err | $ppl | $(echo "scale=2; $size / 1000000" | bc) |")
}
base_ppl=$("$bin/evaluate" --model_name_or_path "$model" --eval_file "$root/data/brown/heldout.txt" --max_length 128 \
  --batch_size 8 --json "${q[@]}" | /usr/bin/python3 -c "import json,sys; print('%.2f' % json.load(sys.stdin)['perplexity'])")
for spec in "rtn_sym:rtn --sym true" "rtn_asym:rtn --sym false" "gptq_sym:gptq --sym true" "gptq_asym:gptq --sym false" \
            "gptq_sym_act_order:gptq --sym true --desc_act true" "awq:awq"; do
  name=${spec%%:*}
  read -r -a flags <<<"${spec#*:}"
  "$bin/quantize" --model_name_or_path "$model" --output_dir "$out/$name" --quantization_method "${flags[@]}" \
    --quantization_bits 4 --group_size 128 "${cal[@]}" "${q[@]}" >/dev/null
  row "4-bit g128 $name" "$out/$name"
done
for spec in "magnitude_50:magnitude --pruning_type unstructured --pruning_ratio 0.5" \
            "wanda_50:wanda --pruning_type unstructured --pruning_ratio 0.5" \
            "sparsegpt_50:sparsegpt --pruning_type unstructured --pruning_ratio 0.5" \
            "magnitude_2_4:magnitude --pruning_type semi_structured --sparsity_pattern 2:4" \
            "wanda_2_4:wanda --pruning_type semi_structured --sparsity_pattern 2:4" \
            "sparsegpt_2_4:sparsegpt --pruning_type semi_structured --sparsity_pattern 2:4"; do
  name=${spec%%:*}
  read -r -a flags <<<"${spec#*:}"
  "$bin/prune" --model_path "$model" --output_dir "$out/$name" --pruning_method "${flags[@]}" "${cal[@]}" "${q[@]}" >/dev/null
  row "$name" "$out/$name"
done
{
  echo "# Calibrated methods on the demo model"
  echo
  echo "Written by \`experiments/calibrated_quality.sh\` on $(date -u +%F), commit $(git -C "$root" rev-parse --short HEAD),"
  echo "$(nproc) cores, in $(( $(date +%s) - start )) s. Model: experiments/demo/trained (4 layers, hidden 128,"
  echo "held-out perplexity $base_ppl unquantized). Calibration: 64 x 128 tokens of data/brown/train.txt, seed 0."
  echo
  echo "| model | mean output error | held-out perplexity | disk MB |"
  echo "|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} >"$root/experiments/calibrated_quality.md"
cat "$root/experiments/calibrated_quality.md"
