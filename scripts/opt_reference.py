"""Independent OPT reference forward, written from docs/formats.md §1.2 with plain torch
functional ops (no transformers, no llmc code). Used only to make golden values for tests.

All math in float32 from the checkpoint tensors upcast to float32.
"""
import math

import torch
import torch.nn.functional as F


def _get(sd, name):
    for key in (name, name.replace("model.decoder.", "decoder.", 1)):
        if key in sd:
            return sd[key].float()
    raise KeyError(name)


def _has(sd, name):
    return name in sd or name.replace("model.decoder.", "decoder.", 1) in sd


def forward(sd, cfg, input_ids, attention_mask, observe=None):
    """input_ids [B, T] long, attention_mask [B, T] (1 real, 0 pad) -> logits [B, T, V] float32.
    observe(name, x), when given, sees the input of every decoder Linear (name without .weight)."""
    H = cfg["hidden_size"]
    nh = cfg["num_attention_heads"]
    hd = H // nh
    pre = cfg.get("do_layer_norm_before", True)
    E = cfg.get("word_embed_proj_dim") or H
    B, T = input_ids.shape
    d = "model.decoder."

    mask = attention_mask.long()
    pos = (torch.cumsum(mask, dim=1) * mask - 1) + 2
    x = F.embedding(input_ids, _get(sd, d + "embed_tokens.weight"))
    if E != H:
        x = F.linear(x, _get(sd, d + "project_in.weight"))
    h = x + F.embedding(pos, _get(sd, d + "embed_positions.weight"))

    neg = torch.finfo(torch.float32).min
    causal = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    blocked = causal[None, None, :, :] | (mask == 0)[:, None, None, :]
    add_mask = torch.zeros(B, 1, T, T).masked_fill(blocked, neg)

    def ln(v, p):
        if cfg.get("layer_norm_elementwise_affine", True):
            return F.layer_norm(v, (H,), _get(sd, p + ".weight"), _get(sd, p + ".bias"), 1e-5)
        return F.layer_norm(v, (H,), None, None, 1e-5)

    def lin(v, p):
        if observe is not None:
            observe(p, v)
        b = _get(sd, p + ".bias") if _has(sd, p + ".bias") else None
        return F.linear(v, _get(sd, p + ".weight"), b)

    for i in range(cfg["num_hidden_layers"]):
        p = d + "layers.%d." % i
        res = h
        if pre:
            h = ln(h, p + "self_attn_layer_norm")
        q = lin(h, p + "self_attn.q_proj") * (hd ** -0.5)
        k = lin(h, p + "self_attn.k_proj")
        v = lin(h, p + "self_attn.v_proj")
        q, k, v = (t.view(B, T, nh, hd).transpose(1, 2) for t in (q, k, v))
        scores = q @ k.transpose(-1, -2) + add_mask
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32)
        o = (probs @ v).transpose(1, 2).reshape(B, T, H)
        h = res + lin(o, p + "self_attn.out_proj")
        if not pre:
            h = ln(h, p + "self_attn_layer_norm")
        res = h
        if pre:
            h = ln(h, p + "final_layer_norm")
        h = lin(torch.relu(lin(h, p + "fc1")), p + "fc2")
        h = res + h
        if not pre:
            h = ln(h, p + "final_layer_norm")
    if pre and not cfg.get("_remove_final_layer_norm", False):
        h = ln(h, d + "final_layer_norm")
    if E != H:
        h = F.linear(h, _get(sd, d + "project_out.weight"))
    head = sd["lm_head.weight"].float() if "lm_head.weight" in sd else _get(sd, d + "embed_tokens.weight")
    return F.linear(h, head)


def perplexity(sd, cfg, ids, max_length):
    """the perplexity protocol of docs/metrics.md: non-overlapping windows, each predicted within itself."""
    total, count = 0.0, 0
    for start in range(0, len(ids), max_length):
        w = torch.tensor(ids[start:start + max_length]).unsqueeze(0)
        if w.shape[1] < 2:
            continue
        logits = forward(sd, cfg, w, torch.ones_like(w))
        logp = torch.log_softmax(logits[0, :-1].double(), dim=-1)
        total -= logp.gather(1, w[0, 1:].unsqueeze(1)).sum().item()
        count += w.shape[1] - 1
    return math.exp(total / count), count
