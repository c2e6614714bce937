"""The Python side of experiments/bench_distill_vs_python.sh: the same distillation training
step as `distill --distillation_loss kl` (teacher forward without gradients, student forward
and backward, alpha * soft KL * T^2 + (1 - alpha) * cross entropy per predicted token,
gradient clipping to 1.0, torch.optim.AdamW), on Debian's python3-torch with the independent
OPT forward of scripts/opt_reference.py (no dropout: the benchmark's configs set it to 0).

  /usr/bin/python3 scripts/bench_train_step.py --teacher DIR --student DIR --batch 4 --block 128 \
      --steps 5 --threads 2      -> prints tokens/s over the steps after one warm-up step
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import opt_reference  # noqa: E402
from make_fixtures import load_safetensors  # noqa: E402



def load_dir(d):
    cfg = json.load(open(os.path.join(d, "config.json")))
    return {k: v.float() for k, v in load_safetensors(os.path.join(d, "model.safetensors")).items()}, cfg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--student", required=True)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--temperature", type=float, default=3.0)
    ap.add_argument("--alpha", type=float, default=0.5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t_sd, t_cfg = load_dir(args.teacher)
    s_sd, s_cfg = load_dir(args.student)
    params = []
    for k, v in s_sd.items():
        v.requires_grad_(True)
        params.append(v)
    opt = torch.optim.AdamW(params, lr=5e-5, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    V = min(t_cfg["vocab_size"], s_cfg["vocab_size"])
    T = args.temperature

    def step():
        ids = torch.randint(0, 50000, (args.batch, args.block), generator=g)
        mask = torch.ones_like(ids)
        with torch.no_grad():
            t_logits = opt_reference.forward(t_sd, t_cfg, ids, mask)
        s_logits = opt_reference.forward(s_sd, s_cfg, ids, mask)
        s = s_logits[:, :-1, :V].reshape(-1, V)
        t = t_logits[:, :-1, :V].reshape(-1, V)
        soft = (F.softmax(t / T, -1) * (F.log_softmax(t / T, -1) - F.log_softmax(s / T, -1))).sum(-1).mean() * T * T
        hard = F.cross_entropy(s_logits[:, :-1].reshape(-1, s_logits.size(-1)), ids[:, 1:].reshape(-1))
        loss = args.alpha * soft + (1 - args.alpha) * hard
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    elapsed = time.perf_counter() - start
    print("%.1f" % (args.steps * args.batch * args.block / elapsed))


if __name__ == "__main__":
    main()
