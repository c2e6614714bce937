"""Prints the largest absolute difference between the tensors of two safetensors files
(same names and shapes required). Reads the format directly: 8-byte little-endian header
length, JSON header, raw little-endian data. Debian's python3-torch does the arithmetic.

  /usr/bin/python3 tests/max_abs_diff.py A.safetensors B.safetensors
"""
import json
import struct
import sys

import torch

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}


def load(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = memoryview(data)[8 + n:]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        t = torch.frombuffer(bytearray(body[a:b]), dtype=DTYPES[e["dtype"]]) if b > a else torch.empty(0)
        out[name] = t.reshape(e["shape"]).to(torch.float64)
    return out


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
