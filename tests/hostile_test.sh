#!/usr/bin/env bash
# Hostile inputs (made at test time by tests/make_hostile.py): each class that used to crash,
# hang, exhaust memory or end as exit 1 ends with its documented exit code and a message that
# names the file, within 10 s and 1 GB each. Also: FIFOs, path traversal, huge sweeps, staging
# folders of killed runs, pathological text, disk full (ulimit -f) and SIGKILL at random
# points (no output ever looks complete when it is not; a rerun succeeds).
#   tests/hostile_test.sh BIN_DIR FIXTURES
set -u
bin=${1:?bin dir}
fx=${2:?fixtures dir}
src="$(cd "$(dirname "$0")/.." && pwd)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
py=/usr/bin/python3
. "$src/tests/cli_lib.sh"
ev="$bin/evaluate"
qz="$bin/quantize"
pr="$bin/prune"
ds="$bin/distill"
pl="$bin/pipeline"
q=(--quiet --threads 1)
h="$tmp/h"
mkdir -p "$h"
$py "$src/tests/make_hostile.py" "$fx" "$h" || { echo "FAIL make_hostile.py"; exit 1; }

# bounded CODE NAME NEEDLE -- COMMAND...: exit CODE within 10 s with a peak resident size
# under 1 GB (GNU time), stderr containing NEEDLE.
bounded() {
  local want=$1 name=$2 needle=$3
  shift 4
  /usr/bin/time -f %M -o "$tmp/rss" timeout -s KILL 10 "$@" >"$so" 2>"$se"
  local got=$? rss
  rss=$(tail -n 1 "$tmp/rss")
  if [ "$got" = "$want" ] && [ "$rss" -lt 1048576 ] && { [ -z "$needle" ] || grep -qF -- "$needle" "$se"; }; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1)); echo "FAIL $name: exit $got (expected $want), peak RSS ${rss} KiB, stderr:"; sed 's/^/  /' "$se" | tail -4
    [ "$got" = 137 ] && echo "  (killed after 10 s)"
  fi
}

ev_case() {  # ev_case CODE CASE NEEDLE: evaluate the case's model (and its tokenizer)
  bounded "$1" "$2" "$3" -- "$ev" --model_name_or_path "$h/$2" --eval_file "$fx/eval.txt" --max_length 16 "${q[@]}"
}

# ---- torch-zip pickles
ev_case 3 pickle_offset_overflow "pytorch_model.bin"
ev_case 3 pickle_zero_stride "zero or overlapping strides"
ev_case 3 pickle_huge_sizes "pytorch_model.bin"
ev_case 3 pickle_deep_tuples "nested deeper than"
# ---- deeply nested JSON everywhere
ev_case 3 json_deep_config "config.json: JSON nested deeper than"
ev_case 3 json_deep_tokenizer_config "tokenizer_config.json: JSON nested deeper than"
ev_case 3 json_deep_vocab "vocab.json: JSON nested deeper than"
ev_case 3 json_deep_safetensors "model.safetensors: safetensors header: JSON nested deeper than"
bounded 3 json_deep_recipe "deep_recipe.json: JSON nested deeper than" -- "$pl" --config "$h/deep_recipe.json" --dry_run "${q[@]}"
# ---- vocabulary ids that would size a table
ev_case 3 vocab_id_1e8 "vocab.json: id 100000000"
ev_case 3 vocab_id_2e62 "vocab.json: id 4611686018427387904"
# ---- wrong JSON types: exit 3 naming the file and the key
ev_case 3 type_config_bool "config.json: field 'do_layer_norm_before' must be true or false"
ev_case 3 type_config_int "config.json: field 'hidden_size' must be an integer"
ev_case 3 type_tokenizer_config "tokenizer_config.json: field 'add_bos_token' must be true or false"
bounded 3 quantize-type-config-bool "field 'do_layer_norm_before'" -- "$qz" --model_name_or_path "$h/type_config_bool" \
  --output_dir "$tmp/q-bool" "${q[@]}"
expect_true quantize-wrote-nothing [ ! -e "$tmp/q-bool" ]
bounded 3 quantize-type-quantization-config "field 'quantization_config' must be an object" -- "$qz" \
  --model_name_or_path "$h/type_quantization_config" --output_dir "$tmp/q-qc" "${q[@]}"
# a GPTQ-layout model whose quantization_config.bits is a string
"$qz" --model_name_or_path "$fx/opt_preln_f32" --quantization_method rtn --output_dir "$tmp/rtn" --group_size 32 "${q[@]}" >/dev/null 2>&1
$py - "$tmp/rtn/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["quantization_config"]["bits"] = "four"; json.dump(c, open(sys.argv[1], "w"))
PY
bounded 3 prune-type-quant-bits "field 'quantization_config.bits' must be an integer" -- "$pr" \
  --model_path "$tmp/rtn" --output_dir "$tmp/p-qc" --pruning_ratio 0.5 "${q[@]}"
# ---- safetensors
ev_case 3 st_offsets_wrap "model.safetensors"
ev_case 3 st_shape_wrap "overflows"
ev_case 3 st_long_name "unknown dtype"
expect_true st-long-name-bounded [ "$(wc -c <"$se")" -lt 2500 ]
expect_true st-long-name-no-escape [ -z "$(grep -P '\x1b' "$se")" ]
# ---- packed weights
ev_case 3 gptq_zero_scale_rows "scales"
ev_case 3 nf4_zero_dim "q_proj.weight"
# ---- SentencePiece models: checked before the library sees them
ev_case 0 spm_valid ""
ev_case 3 spm_bad_charsmap "tokenizer.model: not a valid SentencePiece model (normalizer character map"
ev_case 3 spm_unknown_type "unknown model_type 9"
ev_case 3 spm_unk_beyond "unk_id 99"

# ---- a FIFO (or device) where a file is expected: refused, never waited on
mkdir -p "$tmp/fifo"
for f in "$fx/opt_preln_f32"/*; do ln -s "$f" "$tmp/fifo/"; done
rm "$tmp/fifo/model.safetensors" && mkfifo "$tmp/fifo/model.safetensors"
bounded 3 fifo-weights "is a FIFO, expected a regular file" -- "$ev" --model_name_or_path "$tmp/fifo" "${q[@]}"
mkfifo "$tmp/eval.fifo"
bounded 3 fifo-eval-file "is a FIFO" -- "$ev" --model_name_or_path "$fx/opt_preln_f32" --eval_file "$tmp/eval.fifo" "${q[@]}"
bounded 3 device-config "is a device" -- "$ev" --model_name_or_path "$fx/opt_preln_f32" --config /dev/zero "${q[@]}"

# ---- recipes: huge and overflowing sweeps, names that would be paths, @original too early
recipe() { printf '%s\n' "$2" >"$tmp/$1"; }
axis() { $py -c "import json; print(json.dumps(list(range($1))))"; }
recipe sweep20.json '{"name": "s", "model_name_or_path": "'"$fx/opt_preln_f32"'", "output_dir": "'"$tmp/s"'",
  "stages": [{"name": "q", "tool": "quantize", "options": {}}],
  "sweep": {"stages.0.options.blocksize": '"$(axis 1024)"', "stages.0.options.group_size": '"$(axis 1024)"'}}'
bounded 2 sweep-2^20 "1048576 combinations (1024 x 1024)" -- "$pl" --config "$tmp/sweep20.json" --dry_run "${q[@]}"
axes=""
for i in $(seq 0 40); do axes="$axes\"stages.0.options.k$i\": [1, 2, 3],"; done
recipe sweep3_41.json '{"name": "s", "model_name_or_path": "'"$fx/opt_preln_f32"'", "output_dir": "'"$tmp/s"'",
  "stages": [{"name": "q", "tool": "quantize", "options": {}}], "sweep": {'"${axes%,}"'}}'
bounded 2 sweep-overflow "more than 2^64 combinations" -- "$pl" --config "$tmp/sweep3_41.json" --dry_run "${q[@]}"
recipe traversal.json '{"name": "../../x", "model_name_or_path": "'"$fx/opt_preln_f32"'", "output_dir": "'"$tmp/t"'",
  "stages": [{"name": "q", "tool": "quantize", "options": {}}], "sweep": {"stages.0.options.blocksize": [32, 64]}}'
bounded 2 recipe-name-traversal "recipe.name" -- "$pl" --config "$tmp/traversal.json" --dry_run "${q[@]}"
recipe early.json '{"name": "e", "output_dir": "'"$tmp/e"'", "stages": [{"name": "t", "tool": "distill",
  "options": {"student_config": "x.json", "train_tokenizer": "sentencepiece:100", "teacher_model": "@original",
  "train_file": "t.txt"}}]}'
bounded 2 original-before-created "'@original' before there is one" -- "$pl" --config "$tmp/early.json" --dry_run "${q[@]}"

# ---- staging folders of killed runs are removed by the next run writing the same output
mkdir -p "$tmp/st/.out.tmp.4194305/x" "$tmp/st/.out.tmp.1/x"
expect 0 quantize-after-killed -- "$qz" --model_name_or_path "$fx/opt_preln_f32" --output_dir "$tmp/st/out" "${q[@]}"
expect_true stale-staging-removed [ ! -e "$tmp/st/.out.tmp.4194305" ]
expect_true live-staging-kept [ -e "$tmp/st/.out.tmp.1" ]

# ---- disk full while writing: exit 4, nothing that looks complete, a rerun succeeds
for tool in quantize prune; do
  out="$tmp/full-$tool"
  if [ $tool = quantize ]; then args=("$qz" --model_name_or_path "$fx/opt_preln_f32" --output_dir "$out")
  else args=("$pr" --model_path "$fx/opt_preln_f32" --output_dir "$out" --pruning_ratio 0.5); fi
  ( ulimit -f 2000; "${args[@]}" "${q[@]}" ) >"$so" 2>"$se"
  rc=$?
  expect_true "$tool-disk-full-exit-4 (got $rc)" [ "$rc" = 4 ]
  expect_grep "$se" "File too large" "$tool-disk-full-message"
  expect_true "$tool-disk-full-no-output" [ ! -e "$out" ]
  expect 0 "$tool-rerun-after-disk-full" -- "${args[@]}" "${q[@]}"
done

# distill and pipeline under the same limit
for _ in $(seq 60); do cat "$fx/eval.txt"; done >"$tmp/train.txt"
printf '%s\n' '{"model_type": "opt", "vocab_size": 300, "hidden_size": 32, "num_hidden_layers": 1, "ffn_dim": 64,
 "max_position_embeddings": 64, "num_attention_heads": 2, "word_embed_proj_dim": 32}' >"$tmp/student.json"
dargs=("$ds" --student_config "$tmp/student.json" --train_tokenizer sentencepiece:300 --distillation_loss ce
       --train_file "$tmp/train.txt" --block_size 32 --per_device_train_batch_size 4 --max_steps 30 --save_steps 10)
( ulimit -f 20; "${dargs[@]}" --output_dir "$tmp/full-distill" "${q[@]}" ) >"$so" 2>"$se"
rc=$?
expect_true "distill-disk-full-exit-4 (got $rc)" [ "$rc" = 4 ]
expect_true distill-disk-full-not-complete [ ! -e "$tmp/full-distill/metrics.json" ]
expect 0 distill-rerun-after-disk-full -- "${dargs[@]}" --output_dir "$tmp/full-distill" --resume_from_checkpoint latest "${q[@]}"
recipe full.json '{"name": "f", "model_name_or_path": "'"$fx/opt_preln_f32"'", "output_dir": "'"$tmp/pf"'",
  "stages": [{"name": "nf4", "tool": "quantize", "options": {"blocksize": 32}}]}'
( ulimit -f 100; "$pl" --config "$tmp/full.json" "${q[@]}" ) >"$so" 2>"$se"
rc=$?
expect_true "pipeline-disk-full-exit-4 (got $rc)" [ "$rc" = 4 ]
expect_true pipeline-disk-full-no-stage [ ! -e "$tmp/pf/nf4/metrics.json" ]
expect 0 pipeline-rerun-after-disk-full -- "$pl" --config "$tmp/full.json" "${q[@]}"

# ---- SIGKILL at random points: the output is absent or complete (metrics.json, loads)
complete_or_absent() {  # complete_or_absent DIR NAME
  if [ ! -e "$1" ]; then pass=$((pass + 1)); return; fi
  if [ -f "$1/metrics.json" ] && "$ev" --model_name_or_path "$1" "${q[@]}" >/dev/null 2>&1; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL $2: $1 exists but is not a complete model"; ls -la "$1" | head; fi
}
# kill_after LOW HIGH COMMAND...: runs the command, SIGKILLs it after a random delay in
# [LOW, HIGH] seconds (left in $delay).
kill_after() {
  delay=$($py -c "import random; print(round(random.uniform($1, $2), 2))")
  shift 2
  "$@" >/dev/null 2>&1 &
  local pid=$!
  sleep "$delay"
  kill -9 $pid 2>/dev/null
  wait $pid 2>/dev/null
}
for i in 1 2 3 4 5; do
  for tool in quantize prune; do
    out="$tmp/kill-$tool-$i"
    if [ $tool = quantize ]; then args=("$qz" --model_name_or_path "$fx/opt_preln_f32" --output_dir "$out")
    else args=("$pr" --model_path "$fx/opt_preln_f32" --output_dir "$out" --pruning_ratio 0.5); fi
    kill_after 0.05 1.5 "${args[@]}" "${q[@]}"
    complete_or_absent "$out" "$tool-killed-after-${delay}s"
    expect 0 "$tool-rerun-after-kill" -- "${args[@]}" --overwrite "${q[@]}"
    expect_true "$tool-no-staging-left-$i" [ -z "$(ls -A "$tmp" | grep "^\.kill-$tool-$i\.tmp\.")" ]
  done
done

# distill: killed at a random point, no checkpoint or final model looks complete when it is
# not, and the same command with --resume_from_checkpoint latest finishes.
dargs=("$ds" --student_config "$tmp/student.json" --train_tokenizer sentencepiece:300 --distillation_loss ce
       --train_file "$tmp/train.txt" --block_size 32 --per_device_train_batch_size 4 --max_steps 150 --save_steps 10)
for i in 1 2; do
  out="$tmp/kill-distill-$i"
  kill_after 0.5 4.0 "${dargs[@]}" --output_dir "$out" "${q[@]}"
  if [ -e "$out/metrics.json" ]; then complete_or_absent "$out" "distill-killed-after-${delay}s"; else pass=$((pass + 1)); fi
  for c in "$out"/checkpoint-*; do
    [ -e "$c/trainer_state.json" ] || continue
    expect 0 "distill-checkpoint-loads-$i" -- "$ev" --model_name_or_path "$c" "${q[@]}"
  done
  expect 0 "distill-resume-after-kill-$i" -- "${dargs[@]}" --output_dir "$out" --resume_from_checkpoint latest "${q[@]}"
  complete_or_absent "$out" "distill-finished-$i"
done

# pipeline: killed at a random point, the next run finishes and every stage is complete.
recipe killed.json '{"name": "k", "model_name_or_path": "'"$fx/opt_preln_f32"'", "output_dir": "'"$tmp/pk"'",
  "evaluation": {"eval_file": "'"$fx/eval.txt"'", "max_length": 32},
  "stages": [{"name": "pruned", "tool": "prune", "options": {"pruning_type": "unstructured", "pruning_ratio": 0.5}},
             {"name": "nf4", "tool": "quantize", "options": {"blocksize": 32}}]}'
for i in 1 2; do
  kill_after 0.3 3.0 "$pl" --config "$tmp/killed.json" "${q[@]}"
  for st in pruned nf4; do complete_or_absent "$tmp/pk/$st" "pipeline-$st-killed-after-${delay}s"; done
  expect 0 "pipeline-rerun-after-kill-$i" -- "$pl" --config "$tmp/killed.json" "${q[@]}"
  for st in pruned nf4; do complete_or_absent "$tmp/pk/$st" "pipeline-$st-after-rerun"; done
  rm -rf "$tmp/pk"
done

finish hostile_test
