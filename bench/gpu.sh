#!/usr/bin/env bash
# The speed benchmarks on one CUDA GPU, in two commands of at most 10 minutes each (the device
# tool's limit). Each part runs under its own time limit and writes its JSON row by row, so a part
# that runs out keeps what it finished and the next one still runs. On an H200 an eager step is
# bound by launching kernels, and compiling the decoder layers makes it 2.3x faster after a 9 s
# compile (bench/RESULTS.md, "Regional compilation"), so the parts run compiled. `bash bench/gpu.sh`,
# the speed target first:
#   1. bench/latency.py at N = 64 with the steps compiled (`--compile`) and 8 raced starts a seed
#      (`--starts 8`: here a batch of 8 costs about one text): the target's own measurement
#      (3 book passages, 3 model-generated texts, each encoded alone from the CLI, in this GPU's
#      eager fp32-step equivalents, each file decoded eagerly in float32 and bfloat16); the first
#      text pays the compile, the others find it in inductor's on-disk cache;
#   2. the capacity issue's question at the paper's budget: do three book passages of 128 tokens
#      fit one-step in 5000 steps? (`prototokens capacity --grid 64,128 --search bisect`, compiled,
#      one batch: 64, then 128, then bisected between a text's pass and its failure; the records
#      resume, so a later run goes on where this one stopped)
# `bash bench/gpu.sh more`, the rest:
#   3. bench/latency.py at N = 128 (3 book passages), compiled and raced;
#   4. bench/encode.py (Table 4), compiled: the default and the paper's recipe side by side, bf16,
#      three book passages in one batch, 2000 steps at most, N = 64, 32 and 128;
#   5. bench/step.py: eager fp32 and bf16 against bf16 compiled;
#   6. bench/decode.py: one pass against greedy generation, in bf16.
# JSON and records land in $OUT (default bench/results/gpu), the log beside it.
#
#     bash bench/gpu.sh [more]     # after ./setup.sh on a machine with CUDA torch
#     PY=python3 bash bench/gpu.sh   # a machine without network, after bench/offline_kit.sh's unpack
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
  part 45 -c "import prototokens as pt; print(pt.load_model().name)"  # converts the GGUF model once
  if [[ ${1:-} != more ]]; then
    part 280 bench/latency.py --device cuda --n 64 --texts books:3,generated:3 --recipes "fast:--compile --starts 8" \
        --out "$out/compiled-race8"
    part 230 -m prototokens.cli capacity --device cuda --compile --source books --texts 3 --grid 64,128 --search bisect \
        --steps 5000 --budget-tokens off --patience 5000 --batch-size 3 -q -o "$out/capacity-books-5000"
  else
    part 200 bench/latency.py --device cuda --n 128 --texts books:3 --recipes "fast:--compile --starts 8" \
        --out "$out/compiled-race8"
    part 180 bench/encode.py --device cuda --compile inductor --compute-dtype bfloat16 --recipes fast,paper@em \
        --lengths 64,32,128 --texts 3 --steps 2000 --batch 3 --out "$out/compiled"
    part 50 bench/step.py --device cuda --lengths 64 --batches 1,8 --variants bfloat16,bfloat16:inductor --out "$out"
    part 60 bench/decode.py --device cuda --dtype bfloat16 --out "$out"
  fi
} 2>&1 | tee -a "$out/gpu.log"
