"""Encode cost (our Table 4): steps, wall time and success rate of each recipe on the same
seeded real texts, side by side in one run; medians and spreads; texts per hour.

    .venv/bin/python bench/encode.py [--recipes fast,paper@em] [--lengths 16,32,64,128] [--texts 4]
                                     [--steps 1000] [--batch 1] [--source books] [--out bench/results]

A recipe may name its layout as RECIPE@LAYOUT (default: the default layout).
Each recipe gets the same step budget (--steps) so success rates compare; a text counts as a
success when it reaches 100 % token accuracy. Seconds are per batch (per text with --batch 1);
texts per hour = solved texts / total wall time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import prototokens as pt
from prototokens.data import sample_passages


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.0f} [{min(values):.0f}-{max(values):.0f}]"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=pt.DEFAULT_MODEL)
    p.add_argument("--device")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--recipes", default="fast,paper@em")
    p.add_argument("--lengths", default="16,32,64,128")
    p.add_argument("--texts", type=int, default=4)
    p.add_argument("--steps", type=int, default=1000, help="the same step budget for every recipe")
    p.add_argument("--batch", type=int, default=1, help="texts per batch (1: per-text wall times)")
    p.add_argument("--source", default="books")
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    args = p.parse_args()
    lm = pt.load_model(args.model, device=args.device, dtype=args.dtype)
    lengths = [int(x) for x in args.lengths.split(",")]
    passages = sample_passages(lm, args.source, args.texts, max(lengths), seed=0)
    rows = []
    print(f"{lm.name} on {lm.device} ({lm.dtype}), torch threads {torch.get_num_threads()}, "
          f"{args.texts} texts from {args.source}, {args.steps} steps at most, batch {args.batch}")
    print(f"{'N':>4} {'recipe@layout':>18} {'solved':>7} {'steps: median [range]':>22} {'seconds: median [range]':>24} {'texts/hour':>10}")
    for n in lengths:
        targets = [q.target_ids[:n] for q in passages]
        for name in args.recipes.split(","):
            recipe_name, _, layout = name.partition("@")
            recipe = pt.get_recipe(recipe_name).with_overrides(max_steps=args.steps)
            steps, seconds, solved, wall = [], [], [], 0.0
            for start in range(0, len(targets), args.batch):
                began = time.perf_counter()
                fit = pt.optimize(lm, targets[start: start + args.batch], recipe=recipe,
                                  layout=layout or pt.layout.DEFAULT_LAYOUT, progress=False)
                elapsed = time.perf_counter() - began
                wall += elapsed
                solved += [s == "solved" for s in fit.status]
                steps += [s for s, ok in zip(fit.steps, fit.status) if ok == "solved"]
                seconds += [elapsed] * sum(s == "solved" for s in fit.status)
            row = {"n_tokens": n, "recipe": name, "steps_budget": args.steps, "texts": len(targets),
                   "solved": sum(solved), "steps": steps, "seconds": seconds, "wall_s": wall,
                   "texts_per_hour": 3600 * sum(solved) / wall}
            rows.append(row)
            print(f"{n:>4} {name:>18} {sum(solved):>3}/{len(targets):<3} {spread(steps):>22} {spread(seconds):>24} "
                  f"{row['texts_per_hour']:>10.0f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"encode-{lm.device.type}-{args.dtype}.json"
    out.write_text(json.dumps({"model": lm.name, "fingerprint": lm.fingerprint, "device": str(lm.device),
                               "threads": torch.get_num_threads(), "args": vars(args) | {"out": str(args.out)},
                               "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
