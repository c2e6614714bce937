"""An independent Wanda (docs/methods: the published OPT driver) on a fixture model, written
from the paper's rules with the plain-torch OPT forward of scripts/opt_reference.py, against
the masks `prune --pruning_method wanda` wrote.

  wanda_reference.py prepare CORPUS_JSONL WORKDIR
      writes WORKDIR/calibration.txt (one sentence of the corpus whose ids the npm GPT-2
      encoder gave, 40-62 tokens) and WORKDIR/ids.json; prints the window length with BOS,
      for --calibration_seq_len (one window of exactly the text: the offset is 0).
  wanda_reference.py check MODEL_DIR WORKDIR PRUNED_DIR RATIO|N:M
      layer by layer as the published driver: the six Linears' input statistics from one pass
      of the layer with the earlier layers already pruned, metric |W_ij| * ||X_j||_2, per
      output row the floor(in * RATIO) smallest pruned (stable order), or for N:M (as
      --sparsity_pattern: N of every M consecutive inputs of a row kept) the M - N smallest
      of each group (Wanda's 2:4 and 4:8 prune 2 of 4 and 4 of 8), then the next layer.
      Prints the mask disagreements per Linear; exits 1 when any Linear's differ in more than
      0.2% of its weights (float32 against float64 statistics may order a near-tie either
      way; a wrong statistic or comparison group differs in tens of percent).
"""
import json
import math
import os
import sys

import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "scripts"))
import opt_reference  # noqa: E402
from make_fixtures import load_safetensors  # noqa: E402


def prepare(corpus, work):
    for line in open(corpus, encoding="utf-8"):
        d = json.loads(line)
        if 40 <= len(d["ids"]) <= 62 and "\n" not in d["text"]:
            with open(os.path.join(work, "calibration.txt"), "w", encoding="utf-8") as f:
                f.write(d["text"])
            with open(os.path.join(work, "ids.json"), "w") as f:
                json.dump(d["ids"], f)
            print(len(d["ids"]) + 1)
            return 0
    print("no sentence of 40-62 tokens in " + corpus, file=sys.stderr)
    return 1


def check(model_dir, work, pruned_dir, ratio):
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    sd = {k: v.float().clone() for k, v in load_safetensors(os.path.join(model_dir, "model.safetensors")).items()}
    got = load_safetensors(os.path.join(pruned_dir, "model.safetensors"))
    ids = torch.tensor([cfg["bos_token_id"]] + json.load(open(os.path.join(work, "ids.json")))).unsqueeze(0)
    names = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "fc1", "fc2"]
    worst = 0.0
    for layer in range(cfg["num_hidden_layers"]):
        prefix = "model.decoder.layers.%d." % layer
        sq = {}

        def observe(name, x):
            if name.startswith(prefix):
                x2 = x.reshape(-1, x.shape[-1]).float()
                sq[name] = sq.get(name, 0) + (x2 * x2).sum(0)

        with torch.no_grad():
            opt_reference.forward(sd, cfg, ids, torch.ones_like(ids), observe=observe)
        for n in names:
            p = prefix + n
            w = sd[p + ".weight"]
            metric = w.abs() * sq[p].sqrt().unsqueeze(0)
            if ":" in ratio:  # N:M keeps N of every M consecutive inputs of a row
                n_, m_ = (int(v) for v in ratio.split(":"))
                groups = metric.reshape(w.shape[0], -1, m_)
                order = torch.sort(groups, dim=2, stable=True).indices[:, :, :m_ - n_]
                pruned = torch.zeros_like(groups, dtype=torch.bool).scatter_(2, order, True).reshape(w.shape)
            else:
                k = int(math.floor(w.shape[1] * float(ratio)))
                order = torch.sort(metric, dim=1, stable=True).indices[:, :k]
                pruned = torch.zeros_like(w, dtype=torch.bool).scatter_(1, order, True)
            sd[p + ".weight"] = w.masked_fill(pruned, 0.0)
            theirs = got[p + ".weight"].float() == 0
            differ = (theirs != pruned).sum().item()
            frac = differ / w.numel()
            worst = max(worst, frac)
            print("%-40s %5d of %6d weights differ (%.3f%%)" % (p, differ, w.numel(), 100 * frac))
    return 0 if worst <= 0.002 else 1


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "prepare":
        sys.exit(prepare(sys.argv[2], sys.argv[3]))
    if len(sys.argv) == 6 and sys.argv[1] == "check":
        sys.exit(check(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]))
    print(__doc__, file=sys.stderr)
    sys.exit(2)
