#!/usr/bin/env bash
# Decode and prefill speed of llmc beside llama.cpp's figures, every row in one invocation.
# Rows: opt-125m-shaped fp32 and NF4 (bitsandbytes, double quantization), opt-1.3b-shaped
# fp32 and NF4 (random weights; fp32 from a float32 file, NF4 quantized from the float16
# one). For each row and thread count (1 and 2): `evaluate --benchmark`
# with a 128-token prompt and NEW greedy tokens on the KV cache, REPEATS alternating runs,
# medians; the better thread count is the row's figure, as llama-bench's were taken.
# Each row also prints the weight bytes read per decoded token (the model's memory
# footprint less its position table, of which one row is read), the GB/s that makes, and
# the machine's own read bandwidth at the same thread count, measured by this script with
# experiments/read_bandwidth.cpp. The last column splits the peak RSS of one decode run (GNU
# time) into the model's bytes, the KV cache (float32 keys and values of every layer at the
# positions used), the process's own base (peak RSS of `evaluate --help`: LibTorch and the
# other libraries loaded) and what is left (the target is at most 100 MB over model + KV).
#   experiments/bench_decode.sh [REPEATS] [NEW] [SHAPES]     (defaults 5, 128, "opt-125m opt-1.3b")
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
repeats=${1:-5}
new=${2:-128}
shapes=${3:-opt-125m opt-1.3b}
bin="$root/build/apps"
. "$root/experiments/random_model.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
g++ -O3 -march=native -fopenmp "$root/experiments/read_bandwidth.cpp" -o "$work/read_bandwidth"

# llama.cpp (llama-bench, CPU backend, GPT-2 models of the same shapes, random weights) on
# the same 2-vCPU AMD EPYC machine kind, 2026-12-03: decode tok/s, prefill-128 tok/s.
declare -A ref=(
  [opt-125m/fp32]="107 1034 (F32)" [opt-125m/nf4]="292 1716 (Q4_0)"
  [opt-1.3b/fp32]="12.5 110 (F16)" [opt-1.3b/nf4]="37.9 155 (Q4_0)"
)

median() { printf '%s\n' $1 | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
field() { /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

declare -A bw
/usr/bin/time -f %M "$bin/evaluate" --help >/dev/null 2>"$work/base.txt"
base=$(($(tail -1 "$work/base.txt") * 1024))
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F), commit $(git -C "$root" rev-parse --short HEAD)"
echo "bw/N: the read bandwidth at N threads measured just before the row (read_bandwidth.cpp, best of 7 passes over 1 GiB;"
echo "      it drifts by up to 1.4x over minutes on this VM); of bw: the row's GB/s over bw at its better thread count"
printf '%-9s %-5s | %9s %9s %4s | %9s %9s %4s | %8s %6s %5s %5s %6s | %-22s | %s\n' shape fmt "decode/1" "decode/2" best \
  "prefill/1" "prefill/2" best "MB/tok" "GB/s" "bw/1" "bw/2" "of bw" "llama.cpp dec / pre" "RSS MB = model + KV + base + rest"
for shape in $shapes; do
  fp=$(random_model "$shape" float32)
  nf4=$(random_nf4_model "$shape")
  read -r layers hidden maxpos < <(/usr/bin/python3 -c "import json; c=json.load(open('$fp/config.json')); print(c['num_hidden_layers'], c['hidden_size'], c['max_position_embeddings'])")
  for fmt in fp32 nf4; do
    model=$fp
    [ "$fmt" = nf4 ] && model=$nf4
    declare -A dec=() pre=()
    for t in 1 2; do bw[$t]=$("$work/read_bandwidth" "$t" 1024); done
    mem=0
    for _ in $(seq "$repeats"); do
      for t in 1 2; do
        "$bin/evaluate" --model_name_or_path "$model" --dtype float32 --benchmark --bench_prompt_tokens 128 \
          --bench_new_tokens "$new" --threads "$t" --quiet --json >"$work/r.json"
        dec[$t]+="$(field "['decode_tokens_per_s']" <"$work/r.json") "
        pre[$t]+="$(field "['prefill_tokens_per_s']" <"$work/r.json") "
        mem=$(field "['memory_footprint_bytes']" <"$work/r.json")
      done
    done
    d1=$(median "${dec[1]}"); d2=$(median "${dec[2]}"); p1=$(median "${pre[1]}"); p2=$(median "${pre[2]}")
    dt=1; awk -v a="$d1" -v b="$d2" 'BEGIN {exit !(b > a)}' && dt=2
    pt=1; awk -v a="$p1" -v b="$p2" 'BEGIN {exit !(b > a)}' && pt=2
    dbest=$d1; [ $dt = 2 ] && dbest=$d2
    # Weight bytes per decoded token: the footprint less the float32 position table.
    bytes=$((mem - (maxpos + 2) * hidden * 4))
    # Peak RSS of one decode run (2 threads) against model + KV cache (float32 keys and
    # values of every layer at the positions used) + 100 MB.
    /usr/bin/time -v "$bin/evaluate" --model_name_or_path "$model" --dtype float32 --benchmark --bench_prompt_tokens 128 \
      --bench_new_tokens "$new" --threads 2 --quiet --json >/dev/null 2>"$work/time.txt"
    rss=$(($(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/time.txt") * 1024))
    kv=$((layers * 2 * hidden * (128 + new) * 4))
    read -r rd rp rf <<<"${ref[$shape/$fmt]}"
    awk -v s="$shape" -v f="$fmt" -v d1="$d1" -v d2="$d2" -v dt="$dt" -v p1="$p1" -v p2="$p2" -v pt="$pt" \
      -v by="$bytes" -v db="$dbest" -v bw="${bw[$dt]}" -v bw1="${bw[1]}" -v bw2="${bw[2]}" -v rd="$rd" -v rp="$rp" -v rf="$rf" -v rss="$rss" \
      -v mem="$mem" -v kv="$kv" -v base="$base" \
      'BEGIN {gbs = by * db / 1e9;
              printf "%-9s %-5s | %9.1f %9.1f %4d | %9.1f %9.1f %4d | %8.1f %6.1f %5.1f %5.1f %5.0f%% | %5s / %5s %-8s | %d = %d + %d + %d + %d\n",
                     s, f, d1, d2, dt, p1, p2, pt, by / 1e6, gbs, bw1, bw2, 100 * gbs / bw, rd, rp, rf, rss / 1e6, mem / 1e6, kv / 1e6, base / 1e6, (rss - mem - kv - base) / 1e6}'
  done
done
echo "decode/N, prefill/N: median tok/s at N threads over $repeats runs ($new decoded tokens after a 128-token prompt); best: the better N"
