#!/usr/bin/env bash
# The calibrated methods from the command line: gptq (v1, v2, act-order), awq, sparsegpt and
# wanda on the fixture models; their outputs load and evaluate; the output error they report
# orders as expected; a run killed after its first layer continues from the kept layer and
# ends with the same bytes; bad calibration inputs get their documented exit codes and leave
# nothing behind.
#   calib_cli_test.sh BIN_DIR FIXTURE_DIR
set -u
bin=$1
fx=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
source "$(dirname "$0")/cli_lib.sh"
qz="$bin/quantize"
pr="$bin/prune"
ev="$bin/evaluate"
m="$fx/opt_preln_f32"
q=(--device cpu --threads 2 --quiet)
cal=(--calibration_file "$fx/eval.txt" --num_calibration_samples 8 --calibration_seq_len 32)

# GPTQ v1 (symmetric), v2 (zero points), act-order; the matching RTN for comparison.
expect 0 gptq -- "$qz" --model_name_or_path "$m" --quantization_method gptq --group_size 16 "${cal[@]}" --output_dir "$tmp/gptq" "${q[@]}"
json_check gptq-config "$tmp/gptq/config.json" \
  "m['quantization_config']['quant_method'] == 'gptq' and m['quantization_config']['checkpoint_format'] == 'gptq' and m['quantization_config']['damp_percent'] == 0.01 and m['quantization_config']['true_sequential'] is True"
json_check gptq-metrics "$tmp/gptq/metrics.json" \
  "len(m['per_layer']) == 2 and all('output_error' in v for v in m['layers'].values()) and m['resumed_layers'] == 0"
expect 0 rtn-calibrated -- "$qz" --model_name_or_path "$m" --quantization_method rtn --group_size 16 "${cal[@]}" --output_dir "$tmp/rtn" "${q[@]}"
expect_true gptq-below-rtn /usr/bin/python3 -c "
import json; g = json.load(open('$tmp/gptq/metrics.json')); r = json.load(open('$tmp/rtn/metrics.json'))
exit(0 if g['mean_output_error'] * 2 < r['mean_output_error'] else 1)"
expect 0 evaluate-gptq -- "$ev" --model_name_or_path "$tmp/gptq" --eval_file "$fx/eval.txt" "${q[@]}"
expect 0 gptq-v2 -- "$qz" --model_name_or_path "$m" --quantization_method gptq --sym false --group_size 16 "${cal[@]}" --output_dir "$tmp/gptq2" "${q[@]}"
json_check gptq-v2-config "$tmp/gptq2/config.json" "m['quantization_config']['checkpoint_format'] == 'gptq_v2' and m['quantization_config']['sym'] is False"
expect 0 evaluate-gptq-v2 -- "$ev" --model_name_or_path "$tmp/gptq2" --eval_file "$fx/eval.txt" "${q[@]}"
expect 0 gptq-act-order -- "$qz" --model_name_or_path "$m" --quantization_method gptq --desc_act true --group_size 16 "${cal[@]}" --output_dir "$tmp/gptqa" "${q[@]}"
json_check gptq-act-order-config "$tmp/gptqa/config.json" "m['quantization_config']['desc_act'] is True and m['quantization_config']['static_groups'] is True"
expect 0 evaluate-gptq-act-order -- "$ev" --model_name_or_path "$tmp/gptqa" --eval_file "$fx/eval.txt" "${q[@]}"
expect 0 rtn-asym -- "$qz" --model_name_or_path "$m" --quantization_method rtn --sym false --group_size 16 --output_dir "$tmp/rtn2" "${q[@]}"
expect 0 evaluate-rtn-asym -- "$ev" --model_name_or_path "$tmp/rtn2" --eval_file "$fx/eval.txt" "${q[@]}"

# AWQ: the GEMM layout; on a post-LN model the two norm groups are skipped and said so.
expect 0 awq -- "$qz" --model_name_or_path "$m" --quantization_method awq --group_size 16 "${cal[@]}" --output_dir "$tmp/awq" "${q[@]}"
json_check awq-config "$tmp/awq/config.json" \
  "m['quantization_config'] == {'quant_method': 'awq', 'bits': 4, 'group_size': 16, 'zero_point': True, 'version': 'gemm', 'modules_to_not_convert': None}"
expect 0 evaluate-awq -- "$ev" --model_name_or_path "$tmp/awq" --eval_file "$fx/eval.txt" "${q[@]}"
expect 0 awq-post-ln -- "$qz" --model_name_or_path "$fx/opt_postln_f16_bin" --quantization_method awq --group_size 16 "${cal[@]}" --output_dir "$tmp/awqp" "${q[@]}"
json_check awq-post-ln-notes "$tmp/awqp/metrics.json" "all(len(l['notes']) == 2 and 'post-LN' in l['notes'][0] for l in m['per_layer'])"
expect 0 evaluate-awq-post-ln -- "$ev" --model_name_or_path "$tmp/awqp" --eval_file "$fx/eval.txt" "${q[@]}"

# SparseGPT, Wanda and magnitude at 50% with the same calibration: exact sparsity, and the
# output error each reports.
for method in sparsegpt wanda magnitude; do
  expect 0 "prune-$method" -- "$pr" --model_path "$m" --pruning_method "$method" --pruning_type unstructured --pruning_ratio 0.5 \
    "${cal[@]}" --output_dir "$tmp/p-$method" "${q[@]}"
  json_check "prune-$method-metrics" "$tmp/p-$method/metrics.json" "m['achieved_sparsity'] == 0.5 and 'mean_output_error' in m"
done
expect_true sparsegpt-below-magnitude /usr/bin/python3 -c "
import json; s = json.load(open('$tmp/p-sparsegpt/metrics.json')); g = json.load(open('$tmp/p-magnitude/metrics.json'))
exit(0 if s['mean_output_error'] < g['mean_output_error'] else 1)"
expect 0 prune-sparsegpt-2-4 -- "$pr" --model_path "$m" --pruning_method sparsegpt --pruning_type semi_structured --sparsity_pattern 2:4 \
  "${cal[@]}" --output_dir "$tmp/p-24" "${q[@]}"
expect 0 evaluate-sparsegpt-2-4 -- "$ev" --model_name_or_path "$tmp/p-24" --eval_file "$fx/eval.txt" "${q[@]}"

# Wanda against an independent reference (tests/wanda_reference.py: the published driver on the
# plain-torch OPT forward): one calibration window of exactly one corpus sentence (ids from the
# npm GPT-2 encoder), unstructured 50% and 2:4; the masks of every Linear of both layers agree
# (at most 0.2% of a Linear's weights, near-ties between float32 and float64 statistics).
ref="$(dirname "$0")/wanda_reference.py"
mkdir -p "$tmp/wref"
if len=$(/usr/bin/python3 "$ref" prepare "$fx/corpus.jsonl" "$tmp/wref"); then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL wanda-reference-prepare"; fi
wcal=(--calibration_file "$tmp/wref/calibration.txt" --num_calibration_samples 1 --calibration_seq_len "$len")
expect 0 wanda-ref-50 -- "$pr" --model_path "$m" --pruning_method wanda --pruning_type unstructured --pruning_ratio 0.5 \
  "${wcal[@]}" --output_dir "$tmp/wref/u50" "${q[@]}"
expect_true wanda-matches-reference-50 /usr/bin/python3 "$ref" check "$m" "$tmp/wref" "$tmp/wref/u50" 0.5
expect 0 wanda-ref-2-4 -- "$pr" --model_path "$m" --pruning_method wanda --pruning_type semi_structured --sparsity_pattern 2:4 \
  "${wcal[@]}" --output_dir "$tmp/wref/nm" "${q[@]}"
expect_true wanda-matches-reference-2-4 /usr/bin/python3 "$ref" check "$m" "$tmp/wref" "$tmp/wref/nm" 2:4
# The check itself tells methods apart: magnitude's masks are not Wanda's.
expect 0 magnitude-ref-50 -- "$pr" --model_path "$m" --pruning_method magnitude --pruning_type unstructured --pruning_ratio 0.5 \
  --output_dir "$tmp/wref/mag" "${q[@]}"
expect_true magnitude-differs-from-wanda-reference bash -c "! /usr/bin/python3 '$ref' check '$m' '$tmp/wref' '$tmp/wref/mag' 0.5 >/dev/null"

# Killed after its first layer (SIGKILL), then started again with the same flags: it continues
# from layer 1 and writes the same bytes as the uninterrupted run.
resume() {
  local name=$1 tool=$2 ref=$3
  shift 3
  local out="$tmp/resume-$name"
  LLMC_TEST_KILL_AFTER_LAYER=0 "$tool" "$@" --output_dir "$out" "${q[@]}" >"$so" 2>"$se"
  local code=$?
  if [ "$code" = 137 ] && [ ! -e "$out" ] && [ -e "$tmp/.resume-$name.llmc-layers/layer_00000.json" ]; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL resume-$name-killed: exit $code"; fi
  expect 0 "resume-$name" -- "$tool" "$@" --output_dir "$out" "${q[@]}"
  json_check "resume-$name-resumed" "$out/metrics.json" "m.get('resumed_layers', m.get('calibration', {}).get('resumed_layers')) == 1"
  expect_true "resume-$name-same-bytes" cmp -s "$out/model.safetensors" "$ref/model.safetensors"
  expect_true "resume-$name-state-removed" test ! -e "$tmp/.resume-$name.llmc-layers"
}
resume gptq "$qz" "$tmp/gptq" --model_name_or_path "$m" --quantization_method gptq --group_size 16 "${cal[@]}"
resume awq "$qz" "$tmp/awq" --model_name_or_path "$m" --quantization_method awq --group_size 16 "${cal[@]}"
resume sparsegpt "$pr" "$tmp/p-sparsegpt" --model_path "$m" --pruning_method sparsegpt --pruning_type unstructured --pruning_ratio 0.5 "${cal[@]}"

# pipeline recipes take the new methods and their options like any other (the option tables).
cat >"$tmp/recipe.json" <<JSON
{"name": "calibrated", "model_name_or_path": "$m", "output_dir": "$tmp/pl",
 "stages": [
  {"name": "gptq", "tool": "quantize", "input": "@original", "options": {"quantization_method": "gptq", "group_size": 16,
   "desc_act": true, "calibration_file": "$fx/eval.txt", "num_calibration_samples": 8, "calibration_seq_len": 32}},
  {"name": "awq", "tool": "quantize", "input": "@original", "options": {"quantization_method": "awq", "group_size": 16,
   "calibration_file": "$fx/eval.txt", "num_calibration_samples": 8, "calibration_seq_len": 32}},
  {"name": "sparsegpt", "tool": "prune", "input": "@original", "options": {"pruning_method": "sparsegpt",
   "pruning_type": "semi_structured", "sparsity_pattern": "2:4", "damp_percent": 0.02, "calibration_file": "$fx/eval.txt",
   "num_calibration_samples": 8, "calibration_seq_len": 32}}
 ]}
JSON
expect 0 pipeline-calibrated -- "$bin/pipeline" --config "$tmp/recipe.json" "${q[@]}"
expect_true pipeline-gptq-stage grep -rqs '"quant_method": "gptq"' "$tmp/pl" --include=config.json
expect_true pipeline-awq-stage grep -rqs '"quant_method": "awq"' "$tmp/pl" --include=config.json
expect_true pipeline-sparsegpt-stage grep -rqs '"pruning_method": "sparsegpt"' "$tmp/pl" --include=metrics.json

# Bad input: documented exit codes, nothing written.
printf 'too short' >"$tmp/short.txt"
expect 3 calib-too-short -- "$qz" --model_name_or_path "$m" --quantization_method gptq --group_size 16 --calibration_file "$tmp/short.txt" \
  --calibration_seq_len 32 --output_dir "$tmp/x" "${q[@]}"
expect_grep "$se" "fewer than one calibration sample of 32" calib-too-short-message
expect 2 gptq-no-calibration -- "$qz" --model_name_or_path "$m" --quantization_method gptq --output_dir "$tmp/x" "${q[@]}"
expect 2 awq-3-bit -- "$qz" --model_name_or_path "$m" --quantization_method awq --quantization_bits 3 "${cal[@]}" --output_dir "$tmp/x" "${q[@]}"
expect_grep "$se" "4-bit codes only" awq-3-bit-message
expect 2 gptq-3-bit-act-order-group -- "$qz" --model_name_or_path "$m" --quantization_method gptq --quantization_bits 3 --desc_act true \
  --group_size 24 "${cal[@]}" --output_dir "$tmp/x" "${q[@]}"
expect 2 gptq-damp -- "$qz" --model_name_or_path "$m" --quantization_method gptq --damp_percent 1.5 "${cal[@]}" --output_dir "$tmp/x" "${q[@]}"
expect 2 rtn-desc-act -- "$qz" --model_name_or_path "$m" --quantization_method rtn --desc_act true --group_size 16 --output_dir "$tmp/x" "${q[@]}"
printf '{"text": "The quick brown fox jumps over the lazy dog again and again."}\n{"body": 1}\n' >"$tmp/c.jsonl"
expect 3 calib-jsonl-field -- "$qz" --model_name_or_path "$m" --quantization_method gptq --group_size 16 --calibration_file "$tmp/c.jsonl" \
  --calibration_seq_len 4 --output_dir "$tmp/x" "${q[@]}"
expect_grep "$se" "c.jsonl:2" calib-jsonl-field-line
expect_true calib-nothing-written test ! -e "$tmp/x"
expect_true calib-no-state-left test ! -e "$tmp/.x.llmc-layers"

finish calib_cli_test
