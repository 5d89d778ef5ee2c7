"""Cost of one optimiser step (forward + backward over the layout) in fp32 against bf16 weights,
side by side: the two models alternate repetition by repetition, so machine noise hits both.

    .venv/bin/python bench/step.py [--lengths 32,64,128] [--batches 1,4] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import prototokens as pt
from prototokens.optimize import evaluate


def step_seconds(lm, layout, n: int, batch: int) -> float:
    e = torch.randn(batch, lm.d_model, requires_grad=True)
    m = torch.randn(batch, lm.d_model, requires_grad=True)
    targets = [[5 + i for i in range(n)]] * batch
    started = time.perf_counter()
    evaluate(lm, layout, {"e": e * 0.1, "m": m * 0.1}, targets, 4.0).objective.sum().backward()
    return time.perf_counter() - started


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lengths", default="32,64,128")
    p.add_argument("--batches", default="1,4")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    args = p.parse_args()
    models = {dtype: pt.load_model(dtype=dtype) for dtype in ("float32", "bfloat16")}
    layout = pt.get_layout(pt.layout.DEFAULT_LAYOUT)
    rows = []
    print(f"torch threads {torch.get_num_threads()}; medians of {args.repeats} after a warm-up")
    print(f"{'N':>4} {'batch':>5} {'fp32 s':>8} {'bf16 s':>8} {'fp32/bf16':>9}")
    for n in map(int, args.lengths.split(",")):
        for batch in map(int, args.batches.split(",")):
            times = {dtype: [] for dtype in models}
            for rep in range(args.repeats + 1):
                for dtype, lm in models.items():
                    seconds = step_seconds(lm, layout, n, batch)
                    if rep:
                        times[dtype].append(seconds)
            med = {dtype: statistics.median(t) for dtype, t in times.items()}
            rows.append({"n_tokens": n, "batch": batch, "seconds": times, "ratio": med["float32"] / med["bfloat16"]})
            print(f"{n:>4} {batch:>5} {med['float32']:>8.3f} {med['bfloat16']:>8.3f} {rows[-1]['ratio']:>9.2f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "step-cpu.json"
    out.write_text(json.dumps({"threads": torch.get_num_threads(), "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
