#!/usr/bin/python3
"""The timing reference of experiments/bench_gptq_vs_pytorch.sh: the steps llmc's
`quantize --quantization_method gptq` takes, written plainly in PyTorch (Debian's
python3-torch): calibration windows embedded for layer 0; per decoder layer the four
true-sequential groups [q,k,v] -> out_proj -> fc1 -> fc2, each group's Hessians
H = 2/n sum x x^T gathered by running the layer with the groups before it already
quantized; GPTQ per Linear (dead inputs, 1% dampening, blocks of 128 columns, the
quantizer re-fitted every group_size columns); the quantized layer then makes the next
layer's inputs. Nothing is written: only the time is measured.

  gptq_pytorch_reference.py --model DIR [--samples 128] [--seq_len 512] [--threads N]
"""
import argparse
import json
import math
import struct
import time

import torch

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        t = torch.frombuffer(bytearray(data[b:end]), dtype=DTYPES[e["dtype"]])
        out[name] = t.reshape(e["shape"]).float()
    return out


def grid(w, bits, sym=True):
    maxq = 2 ** bits - 1
    xmin = torch.clamp(w.min(1).values, max=0)
    xmax = torch.clamp(w.max(1).values, min=0)
    if sym:
        xmax = torch.maximum(xmin.abs(), xmax)
        xmin = torch.where(xmin < 0, -xmax, xmin)
    both = (xmin == 0) & (xmax == 0)
    xmin[both] = -1
    xmax[both] = 1
    scale = (xmax - xmin) / maxq
    zero = torch.full_like(scale, (maxq + 1) / 2) if sym else torch.round(-xmin / scale)
    return scale, zero


def gptq(W, H, bits=4, group_size=128, blocksize=128, percdamp=0.01):
    W = W.clone()
    H = H.clone()
    rows, cols = W.shape
    maxq = 2 ** bits - 1
    scale, zero = grid(W, bits)
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H += percdamp * torch.mean(torch.diag(H)) * torch.eye(cols)
    L = torch.linalg.cholesky(H)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)
    Q = torch.zeros_like(W)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        count = i2 - i1
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(count):
            w = W1[:, i]
            d = Hinv1[i, i]
            if group_size != -1 and (i1 + i) % group_size == 0:
                scale, zero = grid(W[:, i1 + i:i1 + i + group_size], bits)
            q = scale * (torch.clamp(torch.round(w / scale) + zero, 0, maxq) - zero)
            Q1[:, i] = q
            err = (w - q) / d
            W1[:, i:] -= err.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err
        Q[:, i1:i2] = Q1
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    return Q


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--samples", type=int, default=128)
    ap.add_argument("--seq_len", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--group_size", type=int, default=128)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_grad_enabled(False)
    t0 = time.time()
    cfg = json.load(open(a.model + "/config.json"))
    sd = read_safetensors(a.model + "/model.safetensors")
    sd = {k[len("model."):] if k.startswith("model.") else k: v for k, v in sd.items()}
    H, nh, L = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"]
    assert cfg.get("do_layer_norm_before", True) and cfg.get("word_embed_proj_dim", H) == H
    hd = H // nh
    g = torch.Generator().manual_seed(0)
    T = a.seq_len
    ids = torch.randint(0, cfg["vocab_size"], (a.samples, T), generator=g)
    pos = torch.arange(T) + 2
    d = "decoder."
    batches = [sd[d + "embed_tokens.weight"][ids[b:b + 8]] + sd[d + "embed_positions.weight"][pos]
               for b in range(0, a.samples, 8)]
    causal = torch.full((T, T), float("-inf")).triu(1)
    t_load = time.time() - t0

    def layer(x, p, observe):
        def lin(name, v):
            if observe is not None:
                observe(name, v)
            return torch.nn.functional.linear(v, p[name + ".weight"], p[name + ".bias"])
        B = x.shape[0]
        h = torch.nn.functional.layer_norm(x, (H,), p["self_attn_layer_norm.weight"], p["self_attn_layer_norm.bias"])
        q = lin("self_attn.q_proj", h) * hd ** -0.5
        k = lin("self_attn.k_proj", h)
        v = lin("self_attn.v_proj", h)
        sp = lambda t: t.view(B, T, nh, hd).transpose(1, 2)
        att = torch.softmax(sp(q) @ sp(k).transpose(-1, -2) + causal, -1) @ sp(v)
        x = x + lin("self_attn.out_proj", att.transpose(1, 2).reshape(B, T, H))
        h = torch.nn.functional.layer_norm(x, (H,), p["final_layer_norm.weight"], p["final_layer_norm.bias"])
        return x + lin("fc2", torch.relu(lin("fc1", h)))

    groups = [["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"], ["self_attn.out_proj"], ["fc1"], ["fc2"]]
    t1 = time.time()
    for i in range(L):
        pre = d + "layers.%d." % i
        p = {k[len(pre):]: v for k, v in sd.items() if k.startswith(pre)}
        for group in groups:
            hs, ns = {}, {}

            def observe(name, v):
                if name not in group:
                    return
                x2 = v.reshape(-1, v.shape[-1])
                n, b = ns.get(name, 0), v.shape[0]
                Hm = hs.get(name, torch.zeros(v.shape[-1], v.shape[-1]))
                Hm *= n / (n + b)
                x2 = math.sqrt(2 / (n + b)) * x2
                Hm += x2.t() @ x2
                hs[name], ns[name] = Hm, n + b
            for x in batches:
                layer(x, p, observe)
            for name in group:
                p[name + ".weight"] = gptq(p[name + ".weight"], hs[name], group_size=a.group_size)
        batches = [layer(x, p, None) for x in batches]
    t_quant = time.time() - t1
    print(json.dumps({"load_s": round(t_load, 2), "calibrate_and_quantize_s": round(t_quant, 2),
                      "total_s": round(t_load + t_quant, 2), "threads": a.threads,
                      "samples": a.samples, "seq_len": T}))


if __name__ == "__main__":
    main()
