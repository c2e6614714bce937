"""Seed corpora for the libFuzzer harnesses (fuzz/), small files made from the same recipes as
the test fixtures: a safetensors file, a torch.save checkpoint and its data.pkl, configs,
recipes, tokenizer files, text.
    fuzz_seeds.py OUT_DIR SOURCE_DIR FIXTURES_DIR"""
import io
import json
import os
import shutil
import sys
import zipfile

import torch

out, src, fx = sys.argv[1:4]
sys.path.insert(0, os.path.join(src, "scripts"))
from make_fixtures import save_safetensors  # noqa: E402


def put(harness, name, data):
    d = os.path.join(out, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


torch.manual_seed(0)
sd = {"model.decoder.layers.0.fc1.weight": torch.randn(4, 3), "model.decoder.layers.0.fc1.bias": torch.randn(4),
      "h": torch.randn(2, 2).half(), "b": torch.randn(3).bfloat16(), "i": torch.arange(5, dtype=torch.int64)}
tmp = os.path.join(out, "tmp.safetensors")
os.makedirs(out, exist_ok=True)
save_safetensors(tmp, {k: v for k, v in sd.items()}, {"format": "pt"})
put("safetensors", "small.safetensors", open(tmp, "rb").read())
os.remove(tmp)
buf = io.BytesIO()
view = torch.randn(6, 4)
torch.save({"w": view, "t": view.t(), "s": view[1:3], "h": torch.randn(3).half()}, buf)
put("torch_zip", "small.bin", buf.getvalue())
with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as z:
    pkl = [n for n in z.namelist() if n.endswith("data.pkl")][0]
    put("pickle", "data.pkl", z.read(pkl))
for name in ("opt_preln_f32", "opt_postln_f16_bin"):
    put("json_config", name + ".json", open(os.path.join(fx, name, "config.json")).read())
put("json_config", "quantized.json", json.dumps({**json.load(open(os.path.join(fx, "opt_preln_f32", "config.json"))),
                                                  "quantization_config": {"quant_method": "gptq", "bits": 4}}))
for name in ("pipeline_config", "pipeline_quality_table"):
    put("recipe", name + ".json", open(os.path.join(src, "configs", name + ".json")).read())
put("recipe", "sweep.json", json.dumps({"name": "s", "model_name_or_path": "m", "output_dir": "o",
                                        "stages": [{"name": "q", "tool": "quantize", "options": {"quantization_bits": 4}}],
                                        "sweep": {"stages.0.options.blocksize": [32, 64]}}))
small_vocab = {"a": 0, "b": 1, "ab": 2, "\u0120": 3, "<|endoftext|>": 4}
put("tokenizer", "vocab", b"\x00" + json.dumps(small_vocab).encode())
put("tokenizer", "config", b"\x01" + open(os.path.join(fx, "opt_preln_f32", "tokenizer_config.json"), "rb").read())
put("tokenizer", "spm", b"\x02" + open(os.path.join(fx, "spm_model", "tokenizer.model"), "rb").read())
put("tokenizer", "text", b"\x03" + open(os.path.join(fx, "eval.txt"), "rb").read()[:2000])
# Base log-probabilities (docs/formats.md §11), written here from the format's description:
# a vocabulary of 5, 7 tokens in windows of 4 (3 + 2 predicted tokens).
import math  # noqa: E402
import struct  # noqa: E402

V, ids, window = 5, [1, 2, 3, 4, 0, 1, 2], 4
pred = 3 + 2
header = json.dumps({"format": "llmc-base-logprobs", "vocab_size": V, "max_length": window, "num_tokens": len(ids),
                     "predicted_tokens": pred, "record_bytes": 28 + 2 * V, "tokenizer": {}}).encode()
blob = b"LLMCLOGP" + struct.pack("<II", 1, len(header)) + header + struct.pack("<%di" % len(ids), *ids)
for k in range(pred):
    logits = [0.5 * ((k + i) % V) for i in range(V)]
    top, low = max(logits), min(logits)
    floor = max(low, top - 40)
    step = (top - floor) / 65534
    lse = top + math.log(sum(math.exp(x - top) for x in logits))
    codes = [0 if x < floor else min(65535, 1 + round((x - floor) / step)) for x in logits]
    blob += struct.pack("<dddi", logits[1] - lse, step, floor - lse, logits.index(top)) + struct.pack("<%dH" % V, *codes)
put("eval_files", "logits", b"\x00" + blob)
put("eval_files", "mc", b"\x01" + b'{"context": "a b", "choices": [" c", " d"], "gold": 1}\n{"context": "", "choices": ["x", "y"], "gold": 0}\n')
put("eval_files", "cloze", b"\x01" + b'{"context": "The end of the", "target": " story"}\n')
