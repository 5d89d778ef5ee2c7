#!/usr/bin/env bash
# The speed benchmarks on one CUDA GPU, prepared to run as one command in under 8 minutes on an
# H100/H200: Table 4 (seconds to 100 %) at N = 32, 64 and 128 for the default and the paper's
# recipe, forward and backward in bf16, three book passages in one batch, 2000 steps at most; then the
# decode benchmark (one pass against greedy generation) in bf16. JSON lands in $OUT (default
# bench/results/gpu), the log beside it.
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
