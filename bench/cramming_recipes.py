"""Which recipe trains cramming's [mem] vector: the first N tokens of three book passages,
cramming with one [mem] vector (after the start token), each recipe at most 300 steps.

    .venv/bin/python bench/cramming_recipes.py [--tokens 4] [--recipes fast,cramming]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import prototokens as pt
from prototokens.cramming import Cramming, evaluate
from prototokens.data import sample_passages


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tokens", type=int, default=4)
    p.add_argument("--recipes", default="fast,cramming")
    p.add_argument("--out", type=Path, default=Path("bench/results/cramming-recipes.json"))
    args = p.parse_args()
    lm = pt.load_model()
    rows = []
    for passage in sample_passages(lm, "books", 3, 128, seed=0):
        target = passage.target_ids[: args.tokens]
        for name in args.recipes.split(","):
            recipe = Cramming().recipe(name).with_overrides(max_steps=300)
            fit = pt.optimize(lm, [target], layout=Cramming(), recipe=recipe, progress=False)
            row = {"text": lm.detokenize(target), "recipe": name, "status": fit.outcomes[0].status, "steps": fit.outcomes[0].steps,
                   "teacher_forced_accuracy": fit.outcomes[0].accuracy, "greedy_accuracy": evaluate(lm, fit, [target])[0]["greedy_accuracy"]}
            rows.append(row)
            print(f"{row['text']!r:40} {name:10} {row['status']:9} step {row['steps']:4} "
                  f"forced {row['teacher_forced_accuracy']:.2f} greedy {row['greedy_accuracy']:.2f}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": lm.name, "args": vars(args) | {"out": str(args.out)}, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
