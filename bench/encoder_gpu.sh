#!/usr/bin/env bash
# The encoder on one CUDA GPU, as one command: train two encoders (e and m from the text; m from
# the text with e kept at the document-start token, the variant whose guess the optimiser refines
# on the CPU runs) and the text-independent floor (--predict none) on book passages of 16, 32 and
# 64 tokens (20000 training passages: the CPU runs show a head that fits the passages it sees and
# carries nothing to other books, so it needs data more than steps), then
# bench/encoder.py on passages of the held-out books: zero-shot at N = 16, 32, 64 (no steps), and
# warm start against the default start at N = 32 (1000 steps). Output in $OUT (default runs/encoder-gpu).
#
#     bash bench/encoder_gpu.sh        # after ./setup.sh on a machine with CUDA torch; STEPS=... to train longer
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/encoder-gpu}
py=${PY:-.venv/bin/python}
steps=${STEPS:-3000}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
"$py" -m prototokens.cli encoder train --device cuda --source books --tokens 16,32,64 --steps "$steps" --batch-size 32 --passages 20000 -o "$out/enc" -q
"$py" -m prototokens.cli encoder train --device cuda --source books --tokens 16,32,64 --steps "$steps" --batch-size 32 --passages 20000 --predict m -o "$out/enc-m" -q
"$py" -m prototokens.cli encoder train --device cuda --source books --tokens 16,32,64 --steps 500 --batch-size 32 --predict none -o "$out/floor" -q
"$py" bench/encoder.py "$out/enc-m" "$out/enc" "$out/floor" "$out"/enc-m/snapshots/step-*.safetensors --device cuda --lengths 16,32,64 \
    --texts 10 --steps 0 --out "$out/zero-shot" 2>&1 | tail -25
"$py" bench/encoder.py "$out/enc-m" "$out/enc" "$out/floor" --device cuda --lengths 32 --texts 10 --steps 1000 --out "$out/warm-n32" 2>&1 | tail -12
