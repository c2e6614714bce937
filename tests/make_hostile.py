"""Makes hostile inputs for tests/hostile_test.sh: one small model directory (or file) per
class of malformed input that used to crash, hang, exhaust memory or end as exit 1. Each case
starts from the tiny fixture model and replaces one file; unchanged files are symbolic links.
    make_hostile.py FIXTURES OUT"""
import json
import os
import shutil
import struct
import sys
import zipfile

fx, out = sys.argv[1], sys.argv[2]
base = os.path.join(fx, "opt_preln_f32")
spm = os.path.join(fx, "spm_model")


def case(name, replace=None, drop=(), src=base):
    """A model directory like `src`, with files replaced (name -> bytes or str) or dropped."""
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    replace = replace or {}
    for f in os.listdir(src):
        if f in replace or f in drop:
            continue
        os.symlink(os.path.abspath(os.path.join(src, f)), os.path.join(d, f))
    for f, content in replace.items():
        mode = "wb" if isinstance(content, bytes) else "w"
        with open(os.path.join(d, f), mode) as fh:
            fh.write(content)
    return d


config = json.load(open(os.path.join(base, "config.json")))


def config_with(**changes):
    c = dict(config)
    c.update(changes)
    return json.dumps(c)


# ---- pickles inside torch zips, written opcode by opcode -------------------------------------
def unicode(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def long1(v):
    return b"\x8a\x08" + struct.pack("<q", v)


def int_tuple(values):
    return b"(" + b"".join(long1(v) for v in values) + b"t"


def ordered_dict():
    return b"ccollections\nOrderedDict\n)R"


def tensor(numel, offset, size, stride):
    pid = b"(" + unicode("storage") + b"ctorch\nFloatStorage\n" + unicode("0") + unicode("cpu") + long1(numel) + b"tQ"
    args = b"(" + pid + long1(offset) + int_tuple(size) + int_tuple(stride) + b"\x89" + ordered_dict() + b"t"
    return b"ctorch._utils\n_rebuild_tensor_v2\n" + args + b"R"


def state_dict_pickle(entries):
    body = b"\x80\x02" + ordered_dict()
    for key, value in entries:
        body += unicode(key) + value + b"s"
    return body + b"."


def torch_zip(pickle_bytes, storage=b"\0" * 64):
    import io
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickle_bytes)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/data/0", storage)
        z.writestr("archive/version", "3\n")
    return buf.getvalue()


def bin_case(name, pickle_bytes):
    case(name, {"pytorch_model.bin": torch_zip(pickle_bytes)}, drop=("model.safetensors",))


W = "model.decoder.embed_tokens.weight"
# offset + extent overflows 64 bits (was an out-of-bounds read)
bin_case("pickle_offset_overflow", state_dict_pickle([(W, tensor(16, (1 << 63) - 10, [100], [1]))]))
# a zero stride: 2^30 elements from a 64-byte storage (was materialised at its logical size)
bin_case("pickle_zero_stride", state_dict_pickle([(W, tensor(16, 0, [1 << 30], [0]))]))
# huge sizes whose product overflows
bin_case("pickle_huge_sizes", state_dict_pickle([(W, tensor(16, 0, [1 << 40, 1 << 40], [0, 0]))]))
# 200,000 nested tuples (was a stack overflow)
bin_case("pickle_deep_tuples", b"\x80\x02N" + b"\x85" * 200000 + b".")

# ---- JSON nested 100,000 deep, in every kind of JSON file ----------------------------------
deep = "[" * 100000 + "]" * 100000
case("json_deep_config", {"config.json": '{"a": ' + deep + "}"})
case("json_deep_tokenizer_config", {"tokenizer_config.json": '{"x": ' + deep + "}"})
case("json_deep_vocab", {"vocab.json": '{"x": ' + deep + "}"})
hdr = ('{"x": ' + deep + "}").encode()
hdr += b" " * ((8 - len(hdr) % 8) % 8)
case("json_deep_safetensors", {"model.safetensors": struct.pack("<Q", len(hdr)) + hdr})
with open(os.path.join(out, "deep_recipe.json"), "w") as fh:
    fh.write('{"name": "x", "output_dir": "o", "stages": ' + deep + "}")

# ---- vocabulary ids that would size a table ----------------------------------------------------
vocab = json.load(open(os.path.join(base, "vocab.json")))
for name, big in (("vocab_id_1e8", 10**8), ("vocab_id_2e62", 2**62)):
    v = dict(vocab)
    v["hostile"] = big
    case(name, {"vocab.json": json.dumps(v)})

# ---- wrong JSON types --------------------------------------------------------------------------
case("type_config_bool", {"config.json": config_with(do_layer_norm_before="yes")})
case("type_config_int", {"config.json": config_with(hidden_size="32")})
tc = json.load(open(os.path.join(base, "tokenizer_config.json")))
tc["add_bos_token"] = "yes"
case("type_tokenizer_config", {"tokenizer_config.json": json.dumps(tc)})
case("type_quantization_config", {"config.json": config_with(quantization_config=5)})

# ---- safetensors -----------------------------------------------------------------------------
def safetensors(header, data=b""):
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data

# offsets that sum past 2^64 and wrap back to the file size (was an out-of-bounds read)
wrap = {}
per = (1 << 61)
for i in range(8):
    wrap["t%d" % i] = {"dtype": "F64", "shape": [1 << 58], "data_offsets": [i * per, (i + 1) * per]}
case("st_offsets_wrap", {"model.safetensors": safetensors(wrap)})
# an empty tensor whose other dims overflow
case("st_shape_wrap", {"model.safetensors": safetensors({"e": {"dtype": "F32", "shape": [0, 1 << 47, 1 << 47],
                                                                 "data_offsets": [0, 0]}})})

# a tensor name of 100,000 characters with a terminal escape: quoted as a bounded prefix
case("st_long_name", {"model.safetensors": safetensors({"\x1b[31m" + "A" * 100000: {"dtype": "F99", "shape": [1],
                                                                                      "data_offsets": [0, 4]}}, b"\0" * 4)})

# ---- packed weights ----------------------------------------------------------------------------
import torch  # noqa: E402  (Debian's python3-torch; only for the tensors below)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from make_fixtures import load_safetensors, save_safetensors  # noqa: E402

weights = load_safetensors(os.path.join(base, "model.safetensors"))
H = config["hidden_size"]
P = "model.decoder.layers.0.self_attn.q_proj."
gptq = dict(weights)
del gptq[P + "weight"]
gptq[P + "qweight"] = torch.zeros(H * 4 // 32, H, dtype=torch.int32)
gptq[P + "qzeros"] = torch.zeros(0, H * 4 // 32, dtype=torch.int32)
gptq[P + "scales"] = torch.zeros(0, H, dtype=torch.float16)
d = case("gptq_zero_scale_rows", {"config.json": config_with(quantization_config={"quant_method": "gptq", "bits": 4})},
         drop=("model.safetensors",))
save_safetensors(os.path.join(d, "model.safetensors"), gptq)

nf4 = dict(weights)
del nf4[P + "weight"]
nf4[P + "weight"] = torch.tensor(7, dtype=torch.float32)  # 0-d
nf4[P + "weight.absmax"] = torch.ones(H * H // 64)
nf4[P + "weight.quant_state.bitsandbytes__nf4"] = torch.tensor(
    list(json.dumps({"quant_type": "nf4", "blocksize": 64, "dtype": "float16", "shape": [H, H]}).encode()),
    dtype=torch.uint8)
d = case("nf4_zero_dim", {"config.json": config_with(quantization_config={"quant_method": "bitsandbytes"})},
         drop=("model.safetensors",))
save_safetensors(os.path.join(d, "model.safetensors"), nf4)

# ---- SentencePiece models ----------------------------------------------------------------------
def varint(v):
    v &= (1 << 64) - 1
    b = b""
    while True:
        byte = v & 0x7F
        v >>= 7
        if v:
            b += bytes([byte | 0x80])
        else:
            return b + bytes([byte])


def field(number, payload):
    if isinstance(payload, int):
        return varint(number << 3) + varint(payload)
    return varint((number << 3) | 2) + varint(len(payload)) + payload


def spm_model(model_type=2, unk_id=0, charsmap=b""):
    pieces = b""
    for i, (piece, kind) in enumerate([("<unk>", 2), ("<s>", 3), ("</s>", 3), ("\u2581a", 1), ("a", 1), ("b", 1)]):
        pieces += field(1, field(1, piece.encode()) + varint((2 << 3) | 5) + struct.pack("<f", -float(i)) + field(3, kind))
    trainer = field(3, model_type) + field(40, unk_id) + field(41, 1) + field(42, 2) + field(43, -1)
    normalizer = field(1, b"identity") + (field(2, charsmap) if charsmap else b"") + field(3, 1)
    return pieces + field(2, trainer) + field(3, normalizer)


def spm_case(name, model):
    """The fixture model with a SentencePiece tokenizer instead of its GPT-2 one."""
    return case(name, {"tokenizer.model": model,
                       "tokenizer_config.json": open(os.path.join(spm, "tokenizer_config.json")).read()},
                drop=("vocab.json", "merges.txt", "special_tokens_map.json"))


spm_case("spm_valid", spm_model())
# a character map whose trie sends any walk past its end (the library read out of bounds)
units = [0] * 256
units[0] = (0x7FFF << 10) | 0x200   # root offset far beyond the array
spm_case("spm_bad_charsmap", spm_model(charsmap=struct.pack("<I", 4 * len(units)) + struct.pack("<%dI" % len(units), *units) + b"x\0"))
spm_case("spm_unknown_type", spm_model(model_type=9))
spm_case("spm_unk_beyond", spm_model(unk_id=99))
