#!/usr/bin/env bash
# The speed benchmarks on one CUDA GPU, prepared to run as one command (sized for under 10 minutes on an
# H100/H200; not yet run on a GPU): Table 4 (seconds to 100 %) at N = 32, 64 and 128 for the default and the paper's
# recipe, forward and backward in bf16, three book passages in one batch, 2000 steps at most; then the
# decode benchmark (one pass against greedy generation) in bf16; then the six 64-token texts of
# bench/latency.py under `fast` with one start a seed and with four raced starts (--starts 4: on a
# GPU a batch row costs far less than a text's step, so the race should cost little). JSON lands
# in $OUT (default bench/results/gpu), the log beside it.
#
#     bash bench/gpu.sh            # after ./setup.sh on a machine with CUDA torch
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench/results/gpu}
mkdir -p "$out"
py=${PY:-.venv/bin/python}
export PYTHONUNBUFFERED=1
"$py" -c "import torch; assert torch.cuda.is_available(), 'bench/gpu.sh needs a CUDA GPU'; print(torch.cuda.get_device_name())" | tee "$out/gpu.log"
"$py" bench/encode.py --device cuda --compute-dtype bfloat16 --recipes fast,paper@em --lengths 32,64,128 \
    --texts 3 --steps 2000 --batch 3 --out "$out" 2>&1 | tee -a "$out/gpu.log"
"$py" bench/decode.py --device cuda --dtype bfloat16 --out "$out" 2>&1 | tee -a "$out/gpu.log"
for starts in 1 4; do
  "$py" bench/recipe_search.py "gpu-n64-starts$starts" n=64 texts=books:3,generated:3 passages=0 restarts=2 starts=$starts 2>&1 | tee -a "$out/gpu.log"
  cp "bench/results/recipes/gpu-n64-starts$starts.json" "$out/"
done
