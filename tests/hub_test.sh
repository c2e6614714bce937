#!/usr/bin/env bash
# Hub downloads against a loopback stand-in (tests/hub_server.py): cache layout shared with
# huggingface_hub, offline reuse, resume after a cut connection, sha256 check, 401, 404,
# unreachable endpoint. Nothing touches a real network.
#   tests/hub_test.sh BIN_DIR FIXTURES
set -u
bin=${1:?bin dir}
fx=${2:?fixtures dir}
ev="$bin/evaluate"
tmp=$(mktemp -d)
pass=0
fail=0
repos="$tmp/repos"
for r in llmc/tiny gated/tiny llmc/cut llmc/corrupt llmc/flaky; do
  mkdir -p "$repos/$r"
  cp "$fx/opt_preln_f32"/* "$repos/$r/"
done
mkdir -p "$repos/llmc/sharded" && cp "$fx/opt_preln_bf16_sharded"/* "$repos/llmc/sharded/"
/usr/bin/python3 "$(dirname "$0")/hub_server.py" "$repos" >"$tmp/port" &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 50); do [ -s "$tmp/port" ] && break; sleep 0.1; done
port=$(cat "$tmp/port")
export HF_ENDPOINT="http://127.0.0.1:$port"
export LLMC_HUB_BACKOFF_MS=20
unset HF_HUB_OFFLINE TRANSFORMERS_OFFLINE HF_TOKEN

expect() {  # CODE NAME -- COMMAND...
  local want=$1 name=$2
  shift 3
  "$@" >"$tmp/out" 2>"$tmp/err"
  local got=$?
  if [ "$got" = "$want" ]; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL $name: exit $got, expected $want"; tail -5 "$tmp/err" | sed 's/^/  /'; fi
}
check() {  # NAME -- COMMAND... (succeeds)
  local name=$1
  shift 2
  if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL $name"; fi
}
q=(--quiet --threads 1 --eval_file "$fx/eval.txt")

cache="$tmp/cache1"
expect 0 download -- env HF_HUB_CACHE="$cache" "$ev" --model_name_or_path llmc/tiny "${q[@]}"
repo="$cache/models--llmc--tiny"
snap="$repo/snapshots/0123456789abcdef0123456789abcdef01234567"
check refs-main -- test "$(cat "$repo/refs/main")" = 0123456789abcdef0123456789abcdef01234567
check snapshot-symlinks-relative -- test "$(readlink "$snap/model.safetensors")" = "../../blobs/$(sha256sum "$fx/opt_preln_f32/model.safetensors" | cut -d' ' -f1)"
check config-blob-is-git-sha1 -- test -L "$snap/config.json"
check tokenizer-downloaded -- test -f "$snap/vocab.json"
check no-incomplete-left -- test -z "$(ls "$repo/blobs" | grep incomplete)"
check lock-dir -- test -d "$cache/.locks/models--llmc--tiny"
expect 0 offline-reuse -- env HF_HUB_CACHE="$cache" HF_HUB_OFFLINE=1 "$ev" --model_name_or_path llmc/tiny "${q[@]}"
expect 3 offline-miss -- env HF_HUB_CACHE="$cache" HF_HUB_OFFLINE=1 "$ev" --model_name_or_path llmc/other "${q[@]}"
expect 0 sharded -- env HF_HUB_CACHE="$cache" "$ev" --model_name_or_path llmc/sharded "${q[@]}"
check sharded-index -- test -L "$cache/models--llmc--sharded/snapshots/0123456789abcdef0123456789abcdef01234567/model-00003-of-00003.safetensors"
expect 0 resume-after-cut -- env HF_HUB_CACHE="$cache" "$ev" --model_name_or_path llmc/cut --log_level warn --threads 1 --eval_file "$fx/eval.txt"
check resume-logged -- grep -q "resuming at byte" "$tmp/err"
expect 3 corrupt -- env HF_HUB_CACHE="$cache" "$ev" --model_name_or_path llmc/corrupt "${q[@]}"
check corrupt-message -- grep -q "sha256" "$tmp/err"
check corrupt-nothing-kept -- test -z "$(ls "$cache/models--llmc--corrupt/blobs" | grep -v -E '^[0-9a-f]{40}$')"
check corrupt-no-dangling -- test ! -e "$cache/models--llmc--corrupt/snapshots/0123456789abcdef0123456789abcdef01234567/model.safetensors"
expect 3 gated -- env HF_HUB_CACHE="$cache" "$ev" --model_name_or_path gated/tiny "${q[@]}"
check gated-message -- grep -q "HF_TOKEN" "$tmp/err"
expect 0 gated-with-token -- env HF_HUB_CACHE="$cache" HF_TOKEN=good "$ev" --model_name_or_path gated/tiny "${q[@]}"
expect 3 not-found -- env HF_HUB_CACHE="$cache" "$ev" --model_name_or_path llmc/nope "${q[@]}"
check not-found-message -- grep -q "neither a local directory nor found on the hub (no such repo)" "$tmp/err"
expect 3 bad-revision -- env HF_HUB_CACHE="$cache" "$ev" --model_name_or_path llmc/tiny --revision nope "${q[@]}"
check bad-revision-message -- grep -q "no revision 'nope'" "$tmp/err"
expect 0 retry-5xx -- env HF_HUB_CACHE="$cache" "$ev" --model_name_or_path llmc/flaky "${q[@]}"
expect 4 unreachable -- env HF_HUB_CACHE="$cache" HF_ENDPOINT=http://127.0.0.1:9 "$ev" --model_name_or_path llmc/fresh "${q[@]}"
check unreachable-message -- grep -q "HF_HUB_OFFLINE=1" "$tmp/err"
# Two processes fetching the same model at once leave one consistent cache.
cache2="$tmp/cache2"
env HF_HUB_CACHE="$cache2" "$ev" --model_name_or_path llmc/tiny "${q[@]}" >/dev/null 2>&1 &
a=$!
env HF_HUB_CACHE="$cache2" "$ev" --model_name_or_path llmc/tiny "${q[@]}" >/dev/null 2>&1 &
b=$!
wait $a; ra=$?
wait $b; rb=$?
check concurrent -- test "$ra$rb" = 00
expect 0 concurrent-then-offline -- env HF_HUB_CACHE="$cache2" HF_HUB_OFFLINE=1 "$ev" --model_name_or_path llmc/tiny "${q[@]}"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
