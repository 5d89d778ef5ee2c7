"""What each registered optimiser's own update costs, beside one fp32 forward and backward of the
same batch: the part of an encoding step the optimiser adds. Updates of (e, m) for B texts are
timed over 100 steps (so a refresh every 10 steps, as eigen-adamw's, is averaged in), alternated
with the forward and backward, so machine noise hits both.

    .venv/bin/python bench/optimizer_cost.py [--n 64] [--batches 1,8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import prototokens as pt
from prototokens.optimizers import OPTIMIZERS
from step import step_seconds


def update_seconds(name: str, lm, batch: int, steps: int = 100) -> float:
    """Seconds of one update of e and m for ``batch`` texts, averaged over ``steps``."""
    params = [torch.randn(batch, 1, lm.d_model) for _ in range(2)]
    optimizer = OPTIMIZERS[name](params, pt.get_recipe("fast").for_model(lm))
    rows, grads = [torch.arange(batch)] * 2, [torch.randn_like(p) * 1e-3 for p in params]
    started = time.perf_counter()
    for _ in range(steps):
        for p, g in zip(params, grads):
            p.grad = g.clone()
        optimizer.step(rows)
    return (time.perf_counter() - started) / steps


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--batches", default="1,8")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    args = p.parse_args()
    lm = pt.load_model(dtype="float32")
    layout = pt.get_layout(pt.layout.DEFAULT_LAYOUT)
    rows = []
    for batch in map(int, args.batches.split(",")):
        times = {"fp32 forward+backward": [], **{name: [] for name in OPTIMIZERS}}
        step_seconds(lm, layout, args.n, batch)  # warm-up
        for _ in range(args.repeats):
            times["fp32 forward+backward"].append(step_seconds(lm, layout, args.n, batch))
            for name in OPTIMIZERS:
                times[name].append(update_seconds(name, lm, batch))
        median = {k: statistics.median(v) for k, v in times.items()}
        row = {"n": args.n, "batch": batch, "seconds": median,
               "update / fp32 step": {name: median[name] / median["fp32 forward+backward"] for name in OPTIMIZERS}}
        rows.append(row)
        print(json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "optimizer-cost.json").write_text(json.dumps({"threads": torch.get_num_threads(), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
