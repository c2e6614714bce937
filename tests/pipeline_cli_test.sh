#!/usr/bin/env bash
# CLI tests of `pipeline`: recipe errors name the offending path (exit 2), --dry_run prints the
# plan, a sweep over prune + quantize on the fixture model writes metrics.json, summary.csv,
# report.md, SVG plots and the sweep tables under output_dir; a rerun skips every stage (hashes),
# --force reruns; a recipe whose first stage trains the model from scratch.
#   tests/pipeline_cli_test.sh BIN_DIR FIXTURES
set -u
bin=${1:?bin dir}
fx=${2:?fixtures dir}
pl="$bin/pipeline"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
src="$(cd "$(dirname "$0")/.." && pwd)"
lib="$src/tests/cli_lib.sh"
cd "$tmp" || exit 1
py=/usr/bin/python3
. "$lib"
q=(--quiet --threads 2)
recipe() {  # FILE JSON
  printf '%s\n' "$2" >"$1"
}

# ---- Recipe errors: exit 2 with the path in the recipe.
base='"name": "t", "model_name_or_path": "'$fx/opt_preln_f32'", "output_dir": "out"'
recipe bad1.json "{$base, \"stages\": [{\"name\": \"p\", \"tool\": \"prune\", \"options\": {\"pruning_raito\": 0.5}}]}"
expect 2 unknown-option -- "$pl" --config bad1.json "${q[@]}"
expect_grep "$se" "recipe.stages\[0\].options.pruning_raito: unknown option" unknown-option-path
recipe bad2.json "{$base, \"stages\": [{\"name\": \"p\", \"tool\": \"prune_it\"}]}"
expect 2 unknown-tool -- "$pl" --config bad2.json "${q[@]}"
expect_grep "$se" "recipe.stages\[0\].tool: unknown tool 'prune_it' (supported: distill, prune, quantize)" unknown-tool-path
recipe bad3.json "{$base, \"stages\": [{\"name\": \"d\", \"tool\": \"distill\", \"options\": {\"teacher_model\": \"@q\", \"train_file\": \"x.txt\"}}, {\"name\": \"q\", \"tool\": \"quantize\"}]}"
expect 2 later-reference -- "$pl" --config bad3.json "${q[@]}"
expect_grep "$se" "recipe.stages\[0\].options.teacher_model: '@q' refers to a later stage" later-reference-path
recipe bad4.json "{$base, \"colour\": 1, \"stages\": [{\"name\": \"q\", \"tool\": \"quantize\"}]}"
expect 2 unknown-key -- "$pl" --config bad4.json "${q[@]}"
expect_grep "$se" "recipe.colour: unknown key" unknown-key-path
recipe bad5.json "{$base, \"stages\": [{\"name\": \"q\", \"tool\": \"quantize\"}], \"sweep\": {\"stages.3.options.blocksize\": [64]}}"
expect 2 bad-sweep-path -- "$pl" --config bad5.json "${q[@]}"
expect_grep "$se" "recipe.sweep.stages.3.options.blocksize: names no value" bad-sweep-message
recipe bad6.json "{$base, \"stages\": [{\"name\": \"q\", \"tool\": \"quantize\", \"options\": {\"quantization_bits\": 5}}]}"
expect 2 invalid-combination -- "$pl" --config bad6.json "${q[@]}"
expect_grep "$se" "recipe.stages\[0\].options" invalid-combination-path
expect 3 missing-recipe -- "$pl" --config nothing.json "${q[@]}"

# ---- A sweep: prune (ratio swept) then quantize, evaluated with the benchmark, compared with
# the original (KL, top-1) and scored on a small multiple-choice task.
printf '%s\n' '{"context": "The cat sat on the", "choices": [" mat", " theory"], "gold": 0}' \
  '{"context": "One, two,", "choices": [" three", " blue", " seven"], "gold": 0}' >mc.jsonl
recipe sweep.json '{
  "name": "fixture-sweep", "model_name_or_path": "'$fx/opt_preln_f32'", "output_dir": "out",
  "evaluation": {"eval_file": "'$fx/eval.txt'", "max_length": 32, "benchmark": true, "bench_prompt_tokens": 8, "bench_new_tokens": 4,
                 "tasks": "mc.jsonl"},
  "stages": [
    {"name": "pruned", "tool": "prune", "options": {"pruning_type": "unstructured", "pruning_ratio": 0.2}},
    {"name": "nf4", "tool": "quantize", "options": {"quantization_bits": 4, "blocksize": 32}},
    {"name": "int8_of_original", "tool": "quantize", "input": "@original", "options": {"quantization_bits": 8}}
  ],
  "sweep": {"stages.0.options.pruning_ratio": [0.3, 0.6]}
}'
expect 0 dry-run -- "$pl" --config sweep.json --dry_run "${q[@]}"
expect_grep "$so" "run-2 nf4 \[quantize\] to run" dry-run-plan
[ ! -e out/run-1 ] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL dry-run wrote outputs"; }
expect 0 sweep-run -- "$pl" --config sweep.json --json "${q[@]}"
json_check stages-run "$so" "m['runs'] == 2 and m['stages_run'] == 5"
for f in out/metrics.json out/summary.csv out/report.md out/plots/size_vs_perplexity.svg out/plots/decode_speed.svg \
         out/plots/per_layer.svg out/plots/size_vs_kl.svg out/sweep/compression_ratios.csv \
         out/sweep/performance_comparison.json out/sweep/accuracy_tradeoffs.csv; do
  [ -s "$f" ] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL missing $f"; }
done
[ ! -e experiments ] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL wrote outside the recipe's output_dir"; }
expect_true plots-geometry $py "$src/tests/svg_geometry.py" out/plots/size_vs_perplexity.svg out/plots/decode_speed.svg out/plots/per_layer.svg \
  out/plots/size_vs_kl.svg
$py - <<'PY' && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL summary/plots content"; }
import csv, json, xml.etree.ElementTree as ET
rows = list(csv.DictReader(open("out/summary.csv")))
assert len(rows) == 8, rows                                   # 2 runs x (original + 3 stages)
assert rows[0]["stage"] == "original" and rows[1]["stage"] == "pruned"
assert rows[1]["stages.0.options.pruning_ratio"] == "0.3" and rows[5]["stages.0.options.pruning_ratio"] == "0.6"
assert abs(float(rows[5]["sparsity"]) - 0.6) < 0.01, rows[5]
assert float(rows[6]["disk_size_bytes"]) < float(rows[4]["disk_size_bytes"])  # nf4 smaller than the original
for r in rows:
    assert float(r["perplexity"]) > 1 and float(r["decode_tokens_per_s"]) > 0
# int8_of_original is the same in both runs (same hash): one directory
assert rows[3]["run"] == "run-1" and rows[7]["run"] == "run-2"
for name in ("size_vs_perplexity", "decode_speed", "per_layer"):
    root = ET.parse("out/plots/%s.svg" % name).getroot()
    assert root.tag.endswith("svg") and len(list(root)) > 10
m = json.load(open("out/metrics.json"))
assert m["runs"][1]["stages"][3]["path"] == m["runs"][0]["stages"][3]["path"]
assert "| pruned | prune |" in open("out/report.md").read()
# Every stage against the original: KL > 0 and agreement in [0, 1]; the original has none.
assert rows[0]["kl_mean"] == "" and rows[0]["top1_agreement"] == "", rows[0]
for r in rows[1:4] + rows[5:8]:
    assert float(r["kl_mean"]) > 0 and 0 <= float(r["top1_agreement"]) <= 1 and float(r["perplexity_ratio"]) > 0, r
assert float(rows[5]["kl_mean"]) > float(rows[1]["kl_mean"])   # 60% pruned is further away than 30%
for r in rows:
    assert r["mc_acc"] in ("0", "0.5", "1") and r["mc_acc_norm"] in ("0", "0.5", "1"), r
assert "kl_mean" in open("out/report.md").read() and "size_vs_kl.svg" in open("out/report.md").read()
PY
# Rerun: every stage is up to date; --force reruns them.
expect 0 rerun -- "$pl" --config sweep.json --json "${q[@]}"
json_check rerun-skips "$so" "m['stages_run'] == 0"
expect 0 force -- "$pl" --config sweep.json --json --force "${q[@]}"
json_check force-reruns "$so" "m['stages_run'] == 5"
# The plan as JSON; --seed is part of the hash of stages that use ctx's seed (a rerun with
# another seed runs them again); --overwrite is refused (the hash decides).
expect 0 dry-run-json -- "$pl" --config sweep.json --dry_run --json "${q[@]}"
json_check dry-run-json-plan "$so" "m['dry_run'] and len(m['plan']) == 6 and all(p['status'] != 'to run' for p in m['plan'])"
expect 0 dry-run-seed -- "$pl" --config sweep.json --dry_run --json --seed 7 "${q[@]}"
json_check seed-changes-hash "$so" "all(p['status'] == 'to run' for p in m['plan'] if not p['status'].startswith('shared'))"
expect 2 overwrite-refused -- "$pl" --config sweep.json --overwrite "${q[@]}"
expect_grep "$se" "use --force" overwrite-message

# ---- The first stage trains the model from scratch (it is then the original).
for _ in $(seq 30); do cat "$fx/eval.txt"; done >train.txt
recipe scratch.json '{
  "name": "scratch", "output_dir": "scratch",
  "evaluation": {"eval_file": "'$fx/eval.txt'", "max_length": 32},
  "stages": [
    {"name": "trained", "tool": "distill", "options": {"distillation_loss": "ce", "student_config": "student.json",
     "train_tokenizer": "sentencepiece:300", "train_file": "train.txt", "block_size": 32, "per_device_train_batch_size": 4,
     "max_steps": 5, "learning_rate": 0.003}},
    {"name": "student", "tool": "distill", "options": {"teacher_model": "@original", "student_config": "student.json",
     "tokenizer": "@trained", "train_file": "train.txt", "block_size": 32, "per_device_train_batch_size": 4, "max_steps": 3}},
    {"name": "nf4", "tool": "quantize", "options": {"quantization_bits": 4, "blocksize": 32}}
  ]
}'
printf '%s\n' '{"model_type": "opt", "vocab_size": 300, "hidden_size": 32, "num_hidden_layers": 1, "ffn_dim": 64,
 "max_position_embeddings": 64, "num_attention_heads": 2, "word_embed_proj_dim": 32}' >student.json
expect 0 scratch-run -- "$pl" --config scratch.json --json "${q[@]}"
json_check scratch-summary "$so" "[r['stage'] for r in m['summary']] == ['trained', 'student', 'nf4'] and m['summary'][0]['perplexity'] < 300"
# The stage that trained the model is the base the others are compared with.
json_check scratch-compare scratch/metrics.json "'compare' not in m['runs'][0]['stages'][0]['evaluation'] and all(s['evaluation']['compare']['kl_mean'] > 0 for s in m['runs'][0]['stages'][1:])"

# ---- An interrupted training stage continues from its checkpoints on the next run and ends
# where an uninterrupted run ends (max abs difference of the weights <= 1e-5).
long='{"name": "trained", "tool": "distill", "options": {"distillation_loss": "ce", "student_config": "student.json",
  "train_tokenizer": "sentencepiece:300", "train_file": "train.txt", "block_size": 32, "per_device_train_batch_size": 4,
  "max_steps": 400, "save_steps": 20, "learning_rate": 0.003}}'
recipe resume.json '{"name": "resume", "output_dir": "resume", "stages": ['"$long"']}'
recipe straight.json '{"name": "straight", "output_dir": "straight", "stages": ['"$long"']}'
"$pl" --config resume.json "${q[@]}" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 600); do [ -f resume/trained/checkpoint-20/trainer_state.json ] && break; sleep 0.05; done
kill -INT $pid; wait $pid; rc=$?
expect_true interrupted-130 [ "$rc" = 130 ]
expect 0 continue-run -- "$pl" --config resume.json --threads 2
expect_grep "$se" "trained: continuing distill" continue-message
expect 0 straight-run -- "$pl" --config straight.json "${q[@]}"
d=$($py "$src/tests/max_abs_diff.py" resume/trained/model.safetensors straight/trained/model.safetensors)
expect_true "resumed-stage-equal ($d)" $py -c "import sys; sys.exit(0 if float('$d') <= 1e-5 else 1)"

# ---- The seed's configs: each tool accepts its own with --config (explicit flags win).
m="$fx/opt_preln_f32"
expect 0 quantization-config -- "$bin/quantize" --config "$src/configs/quantization_config.json" --model_name_or_path "$m" \
  --output_dir cfg/quantized "${q[@]}"
expect 0 pruning-config -- "$bin/prune" --config "$src/configs/pruning_config.json" --model_path cfg/quantized \
  --output_dir cfg/pruned "${q[@]}"
expect 0 distillation-config -- "$bin/distill" --config "$src/configs/distillation_config.json" --teacher_model "$m" \
  --student_model "$m" --train_file train.txt --eval_file "$fx/eval.txt" --block_size 32 --max_steps 2 \
  --output_dir cfg/distilled "${q[@]}"
expect 0 evaluate-config -- "$bin/evaluate" --config "$src/configs/evaluate_config.json" --model_name_or_path cfg/distilled \
  --max_length 32 --bench_prompt_tokens 8 --bench_new_tokens 4 "${q[@]}"
for recipe in pipeline_config pipeline_quality_table; do
  (cd "$src" && "$pl" --config "configs/$recipe.json" --dry_run --quiet) >"$so" 2>"$se"
  expect_true "$recipe-dry-run" grep -q "pipeline plan for configs/$recipe.json" "$so"
done

finish pipeline_cli_test
