#!/usr/bin/env bash
# The demo on the embedded default (the README's main command): installs what is missing
# (Debian packages, npm packages; writes data/brown/train.txt and heldout.txt from the Brown
# Corpus), builds llmc, and runs `pipeline` on configs/pipeline_config.json: trains a small
# OPT from scratch (SentencePiece tokenizer, ce loss), prunes it, distills it into a smaller
# student, quantizes that to NF4, evaluates every model and writes experiments/demo/report.md.
# Reruns reuse every stage whose output is up to date (stage hashes).
#   scripts/demo.sh [pipeline flags, e.g. --force or --dry_run]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${LLMC_BUILD_DIR:-$root/build}
bash "$root/scripts/setup.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j "$(nproc)" --target pipeline evaluate llmc_spm
cd "$root"
"$build/apps/pipeline" --config configs/pipeline_config.json "$@"
echo "report: $root/experiments/demo/report.md" >&2
