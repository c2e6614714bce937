#!/usr/bin/env bash
# CLI tests of `evaluate`: documented exit codes, --json, --config, --metrics_out, signals.
#   tests/cli_test.sh BIN_DIR FIXTURES
set -u
bin=${1:?bin dir}
fx=${2:?fixtures dir}
ev="$bin/evaluate"
qz="$bin/quantize"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
. "$(dirname "$0")/cli_lib.sh"

m="$fx/opt_preln_f32"
q=(--quiet --threads 2)

expect 0 help -- "$ev" --help
expect_grep "$so" "--model_name_or_path" help-lists-flags
expect 0 version -- "$ev" --version
expect_grep "$so" "llmc" version-text
expect 2 unknown-flag -- "$ev" --model_name_or_path "$m" --no_such_flag
expect 2 missing-required -- "$ev" "${q[@]}"
expect 2 bad-dtype -- "$ev" --model_name_or_path "$m" --dtype int3 "${q[@]}"
expect 2 fp16-on-cpu -- "$ev" --model_name_or_path "$m" --device cpu --dtype float16 "${q[@]}"
expect_grep "$se" "float16 is not supported on the CPU" fp16-message
expect 2 bad-device -- "$ev" --model_name_or_path "$m" --device quantum "${q[@]}"
if [ -e /dev/nvidia0 ]; then :; else
  expect 4 cuda-absent -- "$ev" --model_name_or_path "$m" --device cuda "${q[@]}"
fi
expect 2 max-length-too-big -- "$ev" --model_name_or_path "$m" --eval_file "$fx/eval.txt" --max_length 65 "${q[@]}"
expect 2 bad-top-p -- "$ev" --model_name_or_path "$m" --prompt hi --do_sample --top_p 1.5 "${q[@]}"

# Bad inputs: exit 3 with the file or tensor named.
expect 3 missing-dir -- "$ev" --model_name_or_path "$fx/does/not/exist" "${q[@]}"
expect_grep "$se" "looked in" missing-dir-message
expect 3 hub-miss -- env HF_HUB_OFFLINE=1 HF_HUB_CACHE="$tmp/cache" "$ev" --model_name_or_path facebook/opt-125m "${q[@]}"
expect_grep "$se" "models--facebook--opt-125m" hub-miss-message
for case in no_config:config.json config_not_json:"not valid JSON" config_missing_field:hidden_size \
            bad_model_type:"unsupported model_type 'llama_x' (supported: opt)" st_truncated:model.safetensors \
            st_header_too_long:model.safetensors st_overlap:"gaps or overlaps" st_gap:"gaps or overlaps" \
            st_unknown_dtype:F13 st_size_mismatch:"data_offsets give" missing_tensor:layers.1.fc2.weight \
            wrong_shape:layers.0.fc1.weight bin_forbidden_global:"forbidden global" bin_truncated:"truncated zip" \
            bin_legacy:legacy; do
  dir=${case%%:*}
  needle=${case#*:}
  expect 3 "bad-$dir" -- "$ev" --model_name_or_path "$fx/bad/$dir" "${q[@]}"
  expect_grep "$se" "$needle" "bad-$dir-message"
done
expect 3 empty-eval-file -- "$ev" --model_name_or_path "$m" --eval_file "$fx/bad/empty.txt" "${q[@]}"
expect 3 latin1-eval-file -- "$ev" --model_name_or_path "$m" --eval_file "$fx/bad/latin1.txt" "${q[@]}"
expect_grep "$se" "not valid UTF-8" latin1-message

# A good run: --json on stdout, the same JSON at --metrics_out, logs on stderr only.
expect 0 json -- "$ev" --model_name_or_path "$m" --eval_file "$fx/eval.txt" --prompt "The quick" --max_new_tokens 3 \
  --benchmark --bench_prompt_tokens 8 --bench_new_tokens 4 --json --metrics_out "$tmp/metrics.json" "${q[@]}"
cp "$so" "$tmp/json_stdout"
for key in '"tool": "evaluate"' '"status": "ok"' '"llmc_version"' '"elapsed_s"' '"options"' '"perplexity"' \
           '"predicted_tokens"' '"num_parameters"' '"disk_size_bytes"' '"memory_footprint_bytes"' '"sparsity"' \
           '"prefill_tokens_per_s"' '"decode_tokens_per_s"' '"generated_text"' '"max_new_tokens": 3'; do
  expect_grep "$tmp/json_stdout" "$key" "json-$key"
  expect_grep "$tmp/metrics.json" "$key" "metrics-out-$key"
done
expect 0 json-parses -- node -e 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))' "$tmp/json_stdout"

# Human summary by default.
expect 0 summary -- "$ev" --model_name_or_path "$m" --eval_file "$fx/eval.txt" "${q[@]}"
expect_grep "$so" "perplexity:" summary-text

# --compare_to and --tasks: a round trip through a saved logits file; bad combinations are
# exit 2, damaged files exit 3.
expect 0 save-logits -- "$ev" --model_name_or_path "$m" --eval_file "$fx/eval.txt" --max_length 32 --save_logits "$tmp/base.logp" --json "${q[@]}"
expect_grep "$so" '"bytes_per_predicted_token"' save-logits-size
expect 0 compare-file -- "$ev" --model_name_or_path "$m" --compare_to "$tmp/base.logp" "${q[@]}"
expect_grep "$so" "top1_agreement: 1" compare-file-self
expect 0 compare-model -- "$ev" --model_name_or_path "$m" --eval_file "$fx/eval.txt" --compare_to "$fx/opt_preln_bin" --json "${q[@]}"
expect_grep "$so" '"kl_mean": 0.0' compare-model-self
expect 2 compare-needs-text -- "$ev" --model_name_or_path "$m" --compare_to "$fx/opt_preln_bin" "${q[@]}"
mkdir -p "$tmp/other_tok"
cp "$m"/config.json "$m"/model.safetensors "$tmp/other_tok/"
cp "$fx/spm_model/"* "$tmp/other_tok/"
expect 2 compare-other-tokenizer -- "$ev" --model_name_or_path "$tmp/other_tok" --eval_file "$fx/eval.txt" --compare_to "$m" "${q[@]}"
expect_grep "$se" "share one tokenizer" compare-other-tokenizer-message
head -c 5000 "$tmp/base.logp" >"$tmp/cut.logp"
expect 3 compare-truncated-file -- "$ev" --model_name_or_path "$m" --compare_to "$tmp/cut.logp" "${q[@]}"
expect_grep "$se" "its header describes" compare-truncated-message
printf '{"context": "One, two,", "choices": [" three", " blue"], "gold": 0}\n' >"$tmp/mc.jsonl"
expect 0 tasks -- "$ev" --model_name_or_path "$m" --tasks "$tmp/mc.jsonl" --json "${q[@]}"
expect_grep "$so" '"acc_norm"' tasks-acc-norm
printf '{"context": "x", "choices": [" a"], "gold": 0}\n' >"$tmp/bad.jsonl"
expect 3 tasks-malformed -- "$ev" --model_name_or_path "$m" --tasks "$tmp/bad.jsonl" "${q[@]}"
expect_grep "$se" "bad.jsonl:1" tasks-malformed-line
expect 2 tasks-bad-limit -- "$ev" --model_name_or_path "$m" --tasks "$tmp/mc.jsonl" --limit -1 "${q[@]}"

# --config: keys are flag names, explicit flags win, unknown keys are exit 2.
printf '{"eval_file": "%s", "max_length": 16, "json": true, "quiet": true}\n' "$fx/eval.txt" >"$tmp/cfg.json"
expect 0 config -- "$ev" --model_name_or_path "$m" --config "$tmp/cfg.json" --max_length 32
expect_grep "$so" '"max_length": 32' config-explicit-wins
expect_grep "$so" '"eval_file"' config-applies
printf '{"eval_fil": "x"}\n' >"$tmp/bad_cfg.json"
expect 2 config-unknown-key -- "$ev" --model_name_or_path "$m" --config "$tmp/bad_cfg.json" "${q[@]}"
expect_grep "$se" "unknown key 'eval_fil'" config-unknown-key-message

# Failures are recorded at --metrics_out.
expect 3 failed-metrics -- "$ev" --model_name_or_path "$fx/bad/missing_tensor" --metrics_out "$tmp/failed.json" "${q[@]}"
expect_grep "$tmp/failed.json" '"status": "failed"' failed-status
expect_grep "$tmp/failed.json" '"error"' failed-error

# A hub id found in the cache.
cache="$tmp/hub"
snap="$cache/models--llmc--tiny/snapshots/0123456789abcdef0123456789abcdef01234567"
mkdir -p "$snap" "$cache/models--llmc--tiny/refs"
cp "$m"/* "$snap/"
printf 0123456789abcdef0123456789abcdef01234567 >"$cache/models--llmc--tiny/refs/main"
expect 0 hub-cache-hit -- env HF_HUB_CACHE="$cache" "$ev" --model_name_or_path llmc/tiny --eval_file "$fx/eval.txt" "${q[@]}"
expect 3 hub-cache-revision-miss -- env HF_HUB_OFFLINE=1 HF_HUB_CACHE="$cache" "$ev" --model_name_or_path llmc/tiny --revision v9 "${q[@]}"

# quantize: the quick start's flags, then evaluate on the result; bad combinations are exit 2.
qargs=(--model_name_or_path "$fx/opt_postln_f16_bin" --quantization_method bitsandbytes --quantization_bits 4 --blocksize 32)
expect 0 quantize-nf4 -- "$qz" "${qargs[@]}" --output_dir "$tmp/q/nf4" "${q[@]}"
expect_grep "$tmp/q/nf4/metrics.json" '"tool": "quantize"' quantize-metrics-tool
expect_grep "$tmp/q/nf4/metrics.json" '"elapsed_s"' quantize-metrics-elapsed
expect_grep "$tmp/q/nf4/metrics.json" '"relative_error"' quantize-metrics-layers
expect_grep "$tmp/q/nf4/config.json" '"quant_method": "bitsandbytes"' quantize-config
expect 0 evaluate-nf4 -- "$ev" --model_name_or_path "$tmp/q/nf4" --eval_file "$fx/eval.txt" --prompt "The" --max_new_tokens 3 --json "${q[@]}"
expect_grep "$so" '"perplexity"' evaluate-nf4-perplexity
expect 0 quantize-int8 -- "$qz" "${qargs[@]}" --quantization_bits 8 --output_dir "$tmp/q/int8" "${q[@]}"
expect 0 evaluate-int8 -- "$ev" --model_name_or_path "$tmp/q/int8" --eval_file "$fx/eval.txt" "${q[@]}"
expect 0 quantize-rtn -- "$qz" --model_name_or_path "$fx/opt_preln_f32" --quantization_method rtn --quantization_bits 4 --group_size 32 --output_dir "$tmp/q/rtn" "${q[@]}"
expect_grep "$tmp/q/rtn/quantize_config.json" '"bits": 4' quantize-rtn-config
# rtn records only what it did: no calibration settings it never used.
json_check quantize-rtn-no-calibration-keys "$tmp/q/rtn/config.json" \
  "not ({'damp_percent', 'true_sequential'} & (set(m['quantization_config']) | set(m['quantization_config']['meta']))) and m['quantization_config']['meta']['method'] == 'rtn'"
json_check quantize-rtn-file-no-calibration-keys "$tmp/q/rtn/quantize_config.json" "'damp_percent' not in m and 'true_sequential' not in m"
expect 0 evaluate-rtn -- "$ev" --model_name_or_path "$tmp/q/rtn" --eval_file "$fx/eval.txt" "${q[@]}"
expect 2 quantize-exists -- "$qz" "${qargs[@]}" --output_dir "$tmp/q/nf4" "${q[@]}"
expect 0 quantize-overwrite -- "$qz" "${qargs[@]}" --output_dir "$tmp/q/nf4" --overwrite "${q[@]}"
expect 2 quantize-bnb-3bit -- "$qz" "${qargs[@]}" --quantization_bits 3 --output_dir "$tmp/q/x" "${q[@]}"
expect_grep "$se" "4 bits (nf4, fp4) or 8 bits" quantize-bnb-3bit-message
expect 2 quantize-blocksize -- "$qz" "${qargs[@]}" --blocksize 48 --output_dir "$tmp/q/x" "${q[@]}"
expect 2 quantize-method -- "$qz" "${qargs[@]}" --quantization_method awq --output_dir "$tmp/q/x" "${q[@]}"
expect 2 quantize-rtn-width -- "$qz" --model_name_or_path "$fx/opt_preln_f32" --quantization_method rtn --group_size 128 --output_dir "$tmp/q/x" "${q[@]}"
expect 2 quantize-already -- "$qz" --model_name_or_path "$tmp/q/nf4" --output_dir "$tmp/q/x" "${q[@]}"
expect_grep "$se" "already quantized" quantize-already-message
expect 3 quantize-missing -- "$qz" --model_name_or_path "$fx/nope" --output_dir "$tmp/q/x" "${q[@]}"
if [ -e "$tmp/q/x" ]; then fail=$((fail + 1)); echo "FAIL quantize left a partial output"; else pass=$((pass + 1)); fi

# prune: the quick start's second step, on the quantized output of the first.
pr="$bin/prune"
expect 0 prune-quickstart -- "$pr" --model_path "$tmp/q/nf4" --output_dir "$tmp/p/pruned" --pruning_ratio 0.2 --pruning_method magnitude "${q[@]}"
expect_grep "$tmp/p/pruned/config.json" '"ffn_dim": 48' prune-ffn-dim
expect_grep "$tmp/p/pruned/config.json" '"quant_method": "bitsandbytes"' prune-keeps-format
expect_grep "$tmp/p/pruned/metrics.json" '"tool": "prune"' prune-metrics
expect 0 evaluate-pruned -- "$ev" --model_name_or_path "$tmp/p/pruned" --eval_file "$fx/eval.txt" "${q[@]}"
expect 0 prune-unstructured-eval -- "$pr" --model_path "$m" --output_dir "$tmp/p/u" --pruning_type unstructured --pruning_ratio 0.5 --eval_file "$fx/eval.txt" --json "${q[@]}"
expect_grep "$so" '"perplexity_after"' prune-perplexity-after
expect 2 prune-ratio -- "$pr" --model_path "$m" --output_dir "$tmp/p/x" --pruning_ratio 1.2 "${q[@]}"
expect 2 prune-pattern -- "$pr" --model_path "$m" --output_dir "$tmp/p/x" --pruning_type semi_structured --sparsity_pattern 4:4 "${q[@]}"
expect 2 prune-method -- "$pr" --model_path "$m" --output_dir "$tmp/p/x" --pruning_ratio 0.2 --pruning_method wanda "${q[@]}"
expect 3 prune-missing -- "$pr" --model_path "$fx/nope" --output_dir "$tmp/p/x" --pruning_ratio 0.2 "${q[@]}"

# SIGINT: exit 130, recorded as interrupted.
python_text="$tmp/big.txt"
for i in $(seq 1 4000); do echo "The quick brown fox jumps over the lazy dog, again and again, number $i."; done >"$python_text"
# The signal is sent once evaluation is under way (its log names the token count): sent while
# the process is still starting, it would meet the shell's SIG_IGN for background jobs.
"$ev" --model_name_or_path "$m" --eval_file "$python_text" --metrics_out "$tmp/int.json" --threads 2 >/dev/null 2>"$tmp/int.log" &
pid=$!
for _ in $(seq 1 600); do grep -q " tokens" "$tmp/int.log" 2>/dev/null && break; sleep 0.05; done
kill -INT $pid
wait $pid
rc=$?
if [ "$rc" = 130 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL sigint: exit $rc, expected 130"; fi
expect_grep "$tmp/int.json" '"status": "interrupted"' sigint-status

finish cli_test
