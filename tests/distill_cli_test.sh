#!/usr/bin/env bash
# CLI tests of `distill`: the quick start's flags, exit codes, vocabulary mismatch, quantized
# and sparse students, a short run lowering the held-out KL to the teacher, and exact resume
# after SIGKILL and after SIGINT (final weights within 1e-5, tests/max_abs_diff.py).
#   tests/distill_cli_test.sh BIN_DIR FIXTURES SOURCE_DIR
set -u
bin=${1:?bin dir}
fx=${2:?fixtures dir}
src=${3:?source dir}
ds="$bin/distill"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
py=/usr/bin/python3
. "$src/tests/cli_lib.sh"
# same_weights NAME A B: max abs difference <= 1e-5
same_weights() {
  local d
  d=$($py "$src/tests/max_abs_diff.py" "$1/model.safetensors" "$2/model.safetensors" 2>&1)
  if $py -c "import sys; sys.exit(0 if float('$d') <= 1e-5 else 1)" 2>/dev/null; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL $3: max abs difference $d > 1e-5"
  fi
}

teacher="$fx/opt_preln_f32"
# Training text: 3000 sentences of the nlp-corpus fixture; held-out: the eval fixture.
$py -c "
import json
with open('$fx/corpus.jsonl') as f, open('$tmp/train.txt', 'w') as t, open('$tmp/train.jsonl', 'w') as j:
    for i, line in enumerate(f):
        if i == 3000: break
        s = json.loads(line)['text']
        t.write(s.strip() + '\n')
        j.write(json.dumps({'body': s}) + '\n')
"
cat > "$tmp/student.json" <<'JSON'
{"model_type": "opt", "vocab_size": 50272, "hidden_size": 16, "num_hidden_layers": 1, "ffn_dim": 32,
 "max_position_embeddings": 64, "num_attention_heads": 2, "word_embed_proj_dim": 16, "dropout": 0.1}
JSON
q=(--quiet --threads 2)
small=(--block_size 32 --per_device_train_batch_size 4 --logging_steps 5)

# Usage errors (exit 2).
expect 2 no-train-file -- "$ds" --teacher_model "$teacher" --student_model "$teacher" --output_dir "$tmp/x" "${q[@]}"
expect_grep "$se" "--train_file is required" no-train-file-message
expect 2 kl-needs-teacher -- "$ds" --student_model "$teacher" --train_file "$tmp/train.txt" --output_dir "$tmp/x" "${q[@]}"
expect 2 fresh-needs-tokenizer -- "$ds" --student_config "$tmp/student.json" --distillation_loss ce --train_file "$tmp/train.txt" --output_dir "$tmp/x" "${q[@]}"
expect 2 bad-loss -- "$ds" --student_model "$teacher" --distillation_loss cosine --train_file "$tmp/train.txt" --output_dir "$tmp/x" "${q[@]}"
expect_grep "$se" "supported: ce, kl, mse" bad-loss-message

# The quick start's flags (mse), on the fixtures; the student keeps its float32 dtype.
expect 0 quickstart-mse -- "$ds" --teacher_model "$teacher" --student_model "$fx/opt_preln_bf16_sharded" \
  --output_dir "$tmp/mse" --distillation_loss mse --train_file "$tmp/train.txt" --max_steps 3 "${small[@]}" \
  --metrics_out "$tmp/metrics" "${q[@]}"
json_check mse-metrics "$tmp/metrics" "m['status'] == 'ok' and m['distillation_loss'] == 'mse' and len(m['loss_curve']) >= 1 and m['save_dtype'] == 'bfloat16'"
expect_grep "$tmp/mse/config.json" '"torch_dtype": "bfloat16"' mse-save-dtype
expect 0 output-loads -- "$bin/evaluate" --model_name_or_path "$tmp/mse" --eval_file "$fx/eval.txt" "${q[@]}"
# A non-empty output directory is refused without --overwrite or --resume_from_checkpoint.
expect 2 non-empty-output -- "$ds" --teacher_model "$teacher" --student_model "$teacher" --output_dir "$tmp/mse" \
  --distillation_loss mse --train_file "$tmp/train.txt" --max_steps 1 "${small[@]}" "${q[@]}"
expect_grep "$se" "not empty" non-empty-message

# Vocabulary mismatch: a student with its own SentencePiece tokenizer cannot learn from a GPT-2 BPE teacher.
expect 2 tokenizer-mismatch -- "$ds" --teacher_model "$teacher" --student_config "$tmp/student.json" \
  --train_tokenizer sentencepiece:400 --output_dir "$tmp/mismatch" --train_file "$tmp/train.txt" --max_steps 1 "${small[@]}" "${q[@]}"
expect_grep "$se" "share one tokenizer" tokenizer-mismatch-message
# A student whose vocab_size is below the tokenizer's.
mkdir -p "$tmp/smallvocab" && cp "$teacher"/* "$tmp/smallvocab/"
$py -c "
import json, sys
sys.path.insert(0, '$src/scripts')
import make_fixtures as mf
p = '$tmp/smallvocab/config.json'
c = json.load(open(p)); c['vocab_size'] = 50000; json.dump(c, open(p, 'w'))
mf.save_safetensors('$tmp/smallvocab/model.safetensors', mf.make_weights(c, 1))"
expect 2 vocab-too-small -- "$ds" --teacher_model "$teacher" --student_model "$tmp/smallvocab" \
  --output_dir "$tmp/sv" --train_file "$tmp/train.txt" --max_steps 1 "${small[@]}" "${q[@]}"

# A quantized student is refused (exit 2); a sparse student keeps its zeros.
"$bin/quantize" --model_name_or_path "$teacher" --output_dir "$tmp/nf4" --quantization_method bitsandbytes --quantization_bits 4 "${q[@]}" >/dev/null 2>&1
expect 2 quantized-student -- "$ds" --teacher_model "$teacher" --student_model "$tmp/nf4" --output_dir "$tmp/qs" \
  --train_file "$tmp/train.txt" --max_steps 1 "${small[@]}" "${q[@]}"
expect_grep "$se" "quantize" quantized-student-message
"$bin/prune" --model_path "$teacher" --output_dir "$tmp/sparse" --pruning_type unstructured --pruning_ratio 0.5 "${q[@]}" >/dev/null 2>&1
expect 0 sparse-student -- "$ds" --teacher_model "$teacher" --student_model "$tmp/sparse" --output_dir "$tmp/sp" \
  --train_file "$tmp/train.txt" --max_steps 4 --learning_rate 1e-3 "${small[@]}" --metrics_out "$tmp/metrics" "${q[@]}"
json_check sparsity-kept "$tmp/metrics" "m['output']['sparsity'] >= 0.5"

# A short kl run from a fresh student on the teacher's tokenizer lowers the held-out KL to the teacher.
expect 0 kl-lowers -- "$ds" --teacher_model "$teacher" --student_config "$tmp/student.json" --tokenizer "$teacher" \
  --output_dir "$tmp/kl" --train_file "$tmp/train.jsonl" --text_field body --eval_file "$fx/eval.txt" --max_steps 30 \
  --learning_rate 3e-3 --temperature 1 --hidden_loss_weight 0.5 "${small[@]}" --metrics_out "$tmp/metrics" "${q[@]}"
json_check kl-lowered "$tmp/metrics" "m['kl_to_teacher_after'] < 0.9 * m['kl_to_teacher_before'] and m['teacher_perplexity'] > 0"
json_check kl-curve "$tmp/metrics" "all(k in m['loss_curve'][0] for k in ('soft', 'hard', 'hidden', 'lr', 'grad_norm', 'tokens_per_s'))"

# Exact resume. Reference: an uninterrupted run. Then the same run killed with SIGKILL once its
# first checkpoint exists, and resumed; and one interrupted by SIGINT (exit 130, checkpoint saved), resumed.
run=("$ds" --student_config "$tmp/student.json" --train_tokenizer sentencepiece:400 --distillation_loss ce
     --train_file "$tmp/train.txt" --max_steps 24 --save_steps 5 --save_total_limit 2 --learning_rate 2e-3
     --gradient_accumulation_steps 2 "${small[@]}" --threads 2)
expect 0 reference-run -- "${run[@]}" --quiet --output_dir "$tmp/ref"
"${run[@]}" --quiet --output_dir "$tmp/killed" >/dev/null 2>&1 &
pid=$!
# Any checkpoint will do (--save_total_limit 2 removes the early ones: on a fast machine a
# poll for one named checkpoint can miss it and find the run finished).
for _ in $(seq 1 600); do compgen -G "$tmp/killed/checkpoint-*/trainer_state.json" >/dev/null && break; sleep 0.02; done
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
if [ -f "$tmp/killed/metrics.json" ]; then echo "note: the run finished before the kill"; fi
expect 0 resume-after-kill -- "${run[@]}" --quiet --output_dir "$tmp/killed" --resume_from_checkpoint latest --metrics_out "$tmp/metrics"
json_check resumed-from "$tmp/metrics" "'/checkpoint-' in m.get('resumed_from', '')"
same_weights "$tmp/ref" "$tmp/killed" kill-resume-equal
# The resumed output is complete (its tokenizer survived the thinning of old checkpoints).
expect 0 resumed-output-loads -- "$bin/evaluate" --model_name_or_path "$tmp/killed" --eval_file "$fx/eval.txt" "${q[@]}"
expect_true resumed-checkpoints-complete compgen -G "$tmp/killed/checkpoint-20/tokenizer.model"
"${run[@]}" --log_level warn --output_dir "$tmp/int" >/dev/null 2>"$tmp/int.err" &
pid=$!
for _ in $(seq 1 1500); do compgen -G "$tmp/int/checkpoint-*/trainer_state.json" >/dev/null && break; sleep 0.02; done
kill -INT $pid; wait $pid; rc=$?
expect_true sigint-exit-130 [ "$rc" = 130 ]
# The interrupted step's checkpoint is named in the warning and exists.
saved=$(sed -n 's/.*interrupted: \(checkpoint-[0-9]*\) saved.*/\1/p' "$tmp/int.err")
expect_true "sigint-checkpoint ($saved)" test -n "$saved" -a -f "$tmp/int/$saved/trainer_state.json"
expect 0 resume-after-sigint -- "${run[@]}" --quiet --output_dir "$tmp/int" --resume_from_checkpoint latest
same_weights "$tmp/ref" "$tmp/int" sigint-resume-equal
n=$(ls -d "$tmp/ref"/checkpoint-* | wc -l)
expect_true save-total-limit [ "$n" = 2 ]
# A different setting cannot resume the run.
expect 2 resume-other-settings -- "${run[@]}" --quiet --output_dir "$tmp/int" --resume_from_checkpoint latest --learning_rate 1e-4
expect_grep "$se" "learning_rate" resume-other-settings-message

finish distill_cli_test
