"""Encode cost (our Table 4): steps, wall time and success rate of each recipe on the same
seeded real texts, side by side in one run; medians and spreads; texts per hour.

    .venv/bin/python bench/encode.py [--recipes fast,paper@em] [--lengths 16,32,64,128] [--texts 4]
                                     [--steps 1000] [--batch 1] [--source books] [--out bench/results]

A recipe may name its layout as RECIPE@LAYOUT (default: the default layout).
Each recipe gets the same step budget per text (--steps) so success rates compare: a recipe
whose schedule is shorter spends the rest on further seeds (restarts), and its steps to 100 %
count every seed's steps. A text counts as a success when it reaches 100 % token accuracy.
A text's time to 100 % is the wall time from the start of its batch to its solution (texts of
a batch leave it as they are solved); a failure counts as slower than any success, so a median
over all texts is a lower bound (">") when half or more failed. The last column divides each
recipe's median time by the first recipe's. Texts per hour = solved texts / total wall time.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

import prototokens as pt
from prototokens.data import sample_passages


def median(values: list[tuple[float, bool]]) -> tuple[float, bool]:
    """Median of (value, failed) per text, where a failure's value is only a lower bound (the
    budget it used up) and ranks above every success: (median, is a lower bound)."""
    ranked = sorted(values, key=lambda v: (v[1], v[0]))
    middle = ranked[(len(ranked) - 1) // 2: len(ranked) // 2 + 1]
    if any(failed for _, failed in middle):
        return min(v for v, failed in middle if failed), True
    return statistics.median(v for v, _ in middle), False


def spread(values: list[tuple[float, bool]]) -> str:
    (value, bound), solved = median(values), [v for v, failed in values if not failed]
    return (">" if bound else "") + f"{value:.0f}" + (f" [{min(solved):.0f}-{max(solved):.0f}]" if solved else "")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=pt.DEFAULT_MODEL)
    p.add_argument("--device")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--recipes", default="fast,paper@em")
    p.add_argument("--compile", metavar="BACKEND[:MODE]", help="run the steps through torch.compile (as the CLI's --compile)")
    p.add_argument("--compute-dtype", help="run every recipe's forward and backward in this dtype (default: each recipe's own)")
    p.add_argument("--lengths", default="16,32,64,128")
    p.add_argument("--texts", type=int, default=4)
    p.add_argument("--steps", type=int, default=1000, help="the same step budget for every recipe")
    p.add_argument("--batch", type=int, default=1, help="texts per batch (1: per-text wall times)")
    p.add_argument("--source", default="books")
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    args = p.parse_args()
    lm = pt.load_model(args.model, device=args.device, dtype=args.dtype, compile=args.compile)
    lengths = [int(x) for x in args.lengths.split(",")]
    passages = sample_passages(lm, args.source, args.texts, max(lengths), seed=0)
    rows = []
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"encode-{lm.device.type}-{args.dtype}-n{args.lengths.replace(',', '-')}.json"
    print(f"{lm.name} on {lm.device} ({lm.dtype}), torch threads {torch.get_num_threads()}, "
          f"{args.texts} texts from {args.source}, {args.steps} steps at most, batch {args.batch}")
    print(f"{'N':>4} {'recipe@layout':>18} {'solved':>7} {'steps to 100 %':>20} {'seconds to 100 %':>20} "
          f"{'texts/hour':>10} {'first faster by':>15}")
    for n in lengths:
        targets = [q.target_ids[:n] for q in passages]
        first = None
        for name in args.recipes.split(","):
            recipe_name, _, layout = name.partition("@")
            # its own schedule at this length; more seeds while the budget lasts
            recipe = pt.get_recipe(recipe_name).at_length(n).with_overrides(dtype=args.compute_dtype, budget_tokens="off")
            restarts = max(1, args.steps // recipe.max_steps)
            if restarts * recipe.max_steps > args.steps:
                recipe = recipe.with_overrides(max_steps=args.steps)
            steps, seconds, accuracy, wall = [], [], [], 0.0  # per text: (value, failed); best accuracy
            for start in range(0, len(targets), args.batch):
                fit = pt.optimize(lm, targets[start: start + args.batch], recipe=recipe, restarts=restarts,
                                  layout=layout or pt.layout.DEFAULT_LAYOUT, progress=False)
                wall += fit.seconds
                accuracy += [o.accuracy for o in fit.outcomes]
                failed = [not o.solved for o in fit.outcomes]
                steps += [(o.total_steps, f) for o, f in zip(fit.outcomes, failed)]
                seconds += [(fit.seconds if f else o.elapsed, f) for o, f in zip(fit.outcomes, failed)]
            k, solved = len(targets), sum(not f for _, f in steps)
            time_median, bound = median(seconds)
            first = first or (time_median, bound)
            ratio = "-" if bound and first[1] else (">" if bound else "<" if first[1] else "") + f"{time_median / first[0]:.1f}x"
            row = {"n_tokens": n, "recipe": name, "steps_budget": args.steps, "texts": k,
                   "solved": solved, "steps": [v for v, f in steps if not f],
                   "seconds": [v for v, f in seconds if not f], "accuracy": accuracy, "wall_s": wall,
                   "median_seconds": time_median, "median_is_lower_bound": bound, "first_faster_by": ratio,
                   "texts_per_hour": 3600 * solved / wall}
            rows.append(row)
            print(f"{n:>4} {name:>18} {solved:>3}/{k:<3} {spread(steps):>20} {spread(seconds):>20} {row['texts_per_hour']:>10.0f} {ratio:>15}", flush=True)
            out.write_text(json.dumps({"model": lm.name, "fingerprint": lm.fingerprint, "device": str(lm.device),
                                       "threads": torch.get_num_threads(), "args": vars(args) | {"out": str(args.out)},
                                       "rows": rows}, indent=1))  # after every row, so a stopped run keeps what it measured
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
