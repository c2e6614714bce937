"""A last-word cloze task (LAMBADA-style, lm-evaluation-harness's cloze scoring in
`evaluate --tasks`) from the held-out Brown sentences, one JSON object per line:
{"context": <the sentence up to its last word>, "target": " <last word>"}.

Rule, deterministic: every line of the held-out text (one sentence per line) that
  - ends with a period, after which nothing follows,
  - has 8 to 40 words (split on whitespace),
  - ends in a word (before the period) of 3 or more lowercase ASCII letters;
in file order. The context is the sentence before the space preceding that word; the target
is the space and the word, without the period.

  /usr/bin/python3 scripts/brown_cloze.py --heldout data/brown/heldout.txt --out data/tasks/brown_cloze.jsonl
"""
import argparse
import json
import os
import re

WORD = re.compile(r"[a-z]{3,}")


def examples(lines):
    for line in lines:
        s = line.strip()
        if not s.endswith(".") or s.endswith(".."):
            continue
        words = s[:-1].split()
        if not 8 <= len(words) <= 40 or not WORD.fullmatch(words[-1]):
            continue
        body = s[:-1]
        cut = body.rstrip().rfind(" ")
        yield {"context": body[:cut], "target": " " + words[-1]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--heldout", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    with open(a.heldout, encoding="utf-8") as f:
        rows = list(examples(f))
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    tmp = a.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, a.out)
    print(f"{a.out}: {len(rows)} cloze examples")


if __name__ == "__main__":
    main()
