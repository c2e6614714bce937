#!/usr/bin/env bash
# The project's quality table, reproduced with one command:
#   scripts/quality_table.sh [THREADS]
# 1. makes the reference model (configs/reference_model.json: an OPT trained from scratch on
#    the Brown Corpus; cached under models/reference/, skipped when it is there),
# 2. runs configs/pipeline_quality_table.json on it (every method applied to the original and
#    compared with it token by token: KL, top-1 agreement, perplexity, the cloze task),
# 3. writes experiments/quality_table/orderings.md (whether the orderings the field expects
#    hold, with the numbers) and run.json (commit, machine, date, minutes per step).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
threads=${1:-2}
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target pipeline >/dev/null
t0=$(date +%s)
build/apps/pipeline --config configs/reference_model.json --threads "$threads"
t1=$(date +%s)
build/apps/pipeline --config configs/pipeline_quality_table.json --threads "$threads"
t2=$(date +%s)
/usr/bin/python3 scripts/quality_orderings.py experiments/quality_table/summary.csv > experiments/quality_table/orderings.md
/usr/bin/python3 - "$t0" "$t1" "$t2" "$threads" <<'PY'
import json, subprocess, sys, platform, os, datetime
t0, t1, t2, threads = map(int, sys.argv[1:5])
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
ref = json.load(open("models/reference/trained/metrics.json"))
info = {
    "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
    "dirty": bool(subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True).stdout.strip()),
    "date_utc": datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M"),
    "machine": f"{cpu}, {os.cpu_count()} logical cores",
    "threads": threads,
    "reference_model_minutes": round((t1 - t0) / 60, 1),
    "reference_model_train_minutes": round(ref.get("train_seconds", 0) / 60, 1),
    "quality_table_minutes": round((t2 - t1) / 60, 1),
}
json.dump(info, open("experiments/quality_table/run.json", "w"), indent=2)
print(json.dumps(info, indent=2))
PY
