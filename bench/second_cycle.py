"""A second, shorter cosine from each unsolved text's best state, instead of a fresh seed.

    .venv/bin/python bench/second_cycle.py NAME [KEY=VALUE ...]

Runs one seed of the recipe (as bench/recipe_search.py does, same KEY=VALUE fields and n, texts,
passages, seed), then gives every text it left unsolved a second cycle started from its kept
state: the same recipe with ``cycle_lr`` (default 1e-2; several, comma-separated, each from the
same states), ``cycle_steps`` (500) and ``cycle_warmup`` (20). The question: is a text that ends its schedule at 0.9 closer to 100 %
from there than from a fresh seed (the default's restart)? Writes
bench/results/recipes/NAME.json (per text: each cycle's outcome and its accuracy every 10 steps).
"""

from __future__ import annotations

import dataclasses
import sys
import time

import prototokens as pt
from latency import texts_for
from recipe_search import recipe_from, save

CYCLE = {"cycle_lr": "1e-2", "cycle_steps": "500", "cycle_warmup": "20"}


def main():
    name, options = sys.argv[1], dict(a.split("=", 1) for a in sys.argv[2:])
    n, spec = int(options.pop("n", 64)), options.pop("texts", "books:2,generated:1,heldout:1")
    seed, passages = int(options.pop("seed", 0)), int(options.pop("passages", 0))
    cycle = {k: options.pop(k, v) for k, v in CYCLE.items()}
    first = recipe_from(name, options)
    seconds = {f"second-lr{lr}": dataclasses.replace(first, lr=float(lr), max_steps=int(cycle["cycle_steps"]),
                                                     warmup=int(cycle["cycle_warmup"]))
               for lr in cycle["cycle_lr"].split(",")}
    lm = pt.load_model(dtype="float32")
    texts = texts_for(lm, spec, n, passages)
    targets = [lm.tokenize(t)[:n] for _, t in texts]
    started = time.perf_counter()
    fit = pt.optimize(lm, targets, recipe=first, seed=seed, progress=False, trajectory=True)
    rows = [{"text": label, "first": fit.outcomes[j].to_dict(), "first_every_10": every_10(fit, j)}
            for j, (label, _) in enumerate(texts)]
    again = [j for j, o in enumerate(fit.outcomes) if not o.solved]
    for cycle_name, second in seconds.items() if again else ():
        start = {k: v[again] for k, v in fit.vectors.items()}
        refit = pt.optimize(lm, [targets[j] for j in again], recipe=second, seed=seed + 1, start=start,
                            progress=False, trajectory=True)
        for k, j in enumerate(again):
            rows[j] |= {cycle_name: refit.outcomes[k].to_dict(), f"{cycle_name}_every_10": every_10(refit, k)}
    for r in rows:
        parts = [f"{c} {r[c]['status']} {r[c]['accuracy']:.3f} @ {r[c]['steps']}" for c in ("first", *seconds) if c in r]
        print(f"{r['text']}: " + "; ".join(parts), flush=True)
    out = {"name": name, "argv": sys.argv[1:], "recipe": first.to_dict(),
           "second_recipes": {k: r.to_dict() for k, r in seconds.items()}, "n": n,
           "texts": spec, "passages": passages, "seed": seed, "wall_seconds": time.perf_counter() - started, "rows": rows}
    save(name, out)


def every_10(fit, j: int) -> list:
    return [[t.step, round(t.accuracy, 4)] for t in fit.trajectory[j] if t.step % 10 == 0]


if __name__ == "__main__":
    main()
