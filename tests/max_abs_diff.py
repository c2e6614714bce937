"""Prints the largest absolute difference between the tensors of two safetensors files
(same names and shapes required), read by scripts/make_fixtures.py's independent reader;
Debian's python3-torch does the arithmetic.

  /usr/bin/python3 tests/max_abs_diff.py A.safetensors B.safetensors
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
from make_fixtures import load_safetensors  # noqa: E402


def load(path):
    return {k: v.to(torch.float64) for k, v in load_safetensors(path).items()}


def main():
    a, b = load(sys.argv[1]), load(sys.argv[2])
    if sorted(a) != sorted(b):
        sys.exit("different tensor names: %s" % sorted(set(a) ^ set(b)))
    worst = 0.0
    for k in a:
        if a[k].shape != b[k].shape:
            sys.exit("%s: shapes %s vs %s" % (k, list(a[k].shape), list(b[k].shape)))
        if a[k].numel():
            worst = max(worst, (a[k] - b[k]).abs().max().item())
    print("%.3e" % worst)


if __name__ == "__main__":
    main()
