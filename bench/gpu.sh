#!/usr/bin/env bash
# The speed benchmarks on one CUDA GPU, as one command of at most 10 minutes. Each part runs under
# its own time limit and writes its JSON row by row, so a part that runs out keeps what it finished
# and the next one still runs. On an H200 an eager step costs 0.1 s (launch-bound), so the limits
# cut the latency and Table 4 parts to their first rows (bench/RESULTS.md, "One H200"):
#   1. bench/step.py: one forward and backward in fp32 and in bf16 at N = 64 and 128, batches 1, 4, 8;
#   2. bench/latency.py at N = 64 (3 book passages, 3 model-generated texts) and at N = 128 (3 book
#      passages): each text encoded alone from the CLI with the default recipe, in fp32-step
#      equivalents of this GPU, and each file decoded in float32 and bfloat16;
#   3. bench/encode.py (Table 4): the default and the paper's recipe side by side, bf16 forward and
#      backward, three book passages in one batch, 2000 steps at most, N = 64, 32 and 128;
#   4. bench/decode.py: one pass against greedy generation, in bf16.
# JSON lands in $OUT (default bench/results/gpu), the log beside it.
#
#     bash bench/gpu.sh            # after ./setup.sh on a machine with CUDA torch
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench/results/gpu}
mkdir -p "$out"
py=${PY:-.venv/bin/python}
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
part() {  # part SECONDS SCRIPT ARGS...: one benchmark under its time limit; its failure does not stop the rest
  local limit=$1; shift
  echo "== $* (at most $limit s)"
  timeout -s INT "$limit" "$py" "$@" || echo "== $1 ended with exit status $? (124: its time limit)"
}
{
  "$py" -c "import torch; assert torch.cuda.is_available(), 'bench/gpu.sh needs a CUDA GPU'; print(torch.cuda.get_device_name(), 'torch', torch.__version__)" || exit 1
  part 120 -c "import prototokens as pt; print(pt.load_model().name)"  # converts the GGUF model once
  part 60 bench/step.py --device cuda --lengths 64,128 --batches 1,4,8 --out "$out"
  part 170 bench/latency.py --device cuda --n 64 --texts books:3,generated:3 --out "$out"
  part 140 bench/latency.py --device cuda --n 128 --texts books:3 --out "$out"
  part 80 bench/encode.py --device cuda --compute-dtype bfloat16 --recipes fast,paper@em --lengths 64,32,128 \
      --texts 3 --steps 2000 --batch 3 --out "$out"
  part 40 bench/decode.py --device cuda --dtype bfloat16 --out "$out"
} 2>&1 | tee -a "$out/gpu.log"
