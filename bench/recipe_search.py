"""Screen recipe variants for the speed target: the steps a recipe spends per text at N tokens.

    .venv/bin/python bench/recipe_search.py NAME [KEY=VALUE ...]

KEY is a Recipe field (lr, betas=0.9,0.99, max_steps, warmup, margin, temperature, lr_floor,
patience=none, dtype, ...) or: recipe (the base preset, default fast), n (tokens, 64), texts
(sources as bench/latency.py takes them, default books:2,generated:1,heldout:1), passages (the
seed that samples them, 0), seed (first optimiser seed, 0), restarts (seeds per text, 2), layout (default: the package's).

Each text runs alone in its own ``optimize`` call, so its ``total_steps`` (over all its seeds and
starts) is what it costs, in steps of the compute dtype; in float32 that is its cost in fp32-step
equivalents, less the forwards of the dtype checks and the model load, which bench/latency.py
counts. Each kept state is decoded in float32 and bfloat16. Each row keeps the compute pass's
accuracy at every step of each seed and start (and every 10th step, as older screens did). Writes
bench/results/recipes/NAME.json after every text and prints one line per text; run it again
with the same settings after an interruption and it goes on from the first text not written.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

import prototokens as pt
from latency import texts_for
from prototokens.optimize import evaluate
from variants import value

FOLDER = Path("bench/results/recipes")


def main():
    name, options = sys.argv[1], dict(a.split("=", 1) for a in sys.argv[2:])
    n, spec = int(options.pop("n", 64)), options.pop("texts", "books:2,generated:1,heldout:1")
    seed, restarts = int(options.pop("seed", 0)), int(options.pop("restarts", 2))
    passages = int(options.pop("passages", 0))
    layout = pt.get_layout(options.pop("layout", pt.layout.DEFAULT_LAYOUT))
    recipe = recipe_from(name, options)
    summary = {"name": name, "argv": sys.argv[1:], "recipe": recipe.to_dict(), "layout": layout.name, "n": n, "texts": spec, "passages": passages,
               "restarts": restarts, "seed": seed, "threads": torch.get_num_threads()}
    rows = done(summary)
    lm = pt.load_model(dtype="float32")
    texts = texts_for(lm, spec, n, passages)
    for label, text in texts[len(rows):]:
        ids = lm.tokenize(text)[:n]
        started = time.perf_counter()
        fit = pt.optimize(lm, [ids], layout=layout, recipe=recipe, seed=seed, restarts=restarts, progress=False, trajectory=True)
        wall, o = time.perf_counter() - started, fit.outcomes[0]
        decode = {}
        for dtype in ("float32", "bfloat16"):
            with torch.no_grad():
                s = evaluate(lm.in_dtype(dtype), layout, fit.vectors, [ids])
            decode[dtype] = {"accuracy": float(s.accuracy[0]), "margin": float(s.margin[0])}
        runs = {}  # (seed, start) -> the compute pass's accuracy at each of its steps
        for t in fit.trajectory[0]:
            runs.setdefault((t.seed, t.start), []).append(round(t.accuracy, 4))
        rows.append({"text": label, "n": len(ids), **o.to_dict(), "wall_seconds": wall, "decode": decode,
                     "accuracy_every_10": [[t.seed, t.start, t.step, round(t.accuracy, 4)] for t in fit.trajectory[0] if t.step % 10 == 0],
                     "accuracy_every_step": [[seed, start, accuracy] for (seed, start), accuracy in runs.items()]})
        save(name, summary | {"complete": False, "rows": rows})
        print(f"{label}: {o.status} acc {o.accuracy:.3f} margin {o.margin:.2f} steps {o.steps} total {o.total_steps} "
              f"| fp32 {decode['float32']['accuracy']:.3f} bf16 {decode['bfloat16']['accuracy']:.3f}", flush=True)
    costs = sorted(r["total_steps"] if r["status"] == "solved" else float("inf") for r in rows)
    summary |= {"complete": True, "wall_seconds": sum(r["wall_seconds"] for r in rows),
                "solved": sum(r["status"] == "solved" for r in rows), "median_total_steps": statistics.median(costs), "rows": rows}
    save(name, summary)
    print(f"{name}: {summary['solved']}/{len(rows)} solved, total steps {[r['total_steps'] for r in rows]}, "
          f"median {summary['median_total_steps']}, {summary['wall_seconds']:.0f} s", flush=True)


SETTINGS = ("recipe", "layout", "n", "texts", "passages", "restarts", "seed")  # what a resumed screen must share


def done(summary: dict) -> list[dict]:
    """The rows an interrupted screen of this NAME and these settings wrote; none if it never ran.
    (Settings, not arguments: after the defaults move on, ``recipe=NAME@VERSION layout=NAME``
    resume a screen begun under the old ones.)"""
    path = FOLDER / f"{summary['name']}.json"
    if not path.exists():
        return []
    old = json.loads(path.read_text())
    if old.get("complete", True):
        sys.exit(f"error: {path} exists; choose another NAME")
    if any(old.get(k) != summary[k] for k in SETTINGS):
        sys.exit(f"error: {path} was begun with other settings ({' '.join(old['argv'])}, recipe {old['recipe']['name']} "
                 f"v{old['recipe']['version']}, layout {old.get('layout')}); rerun those, or choose another NAME")
    print(f"resuming {path}: {len(old['rows'])} texts done", flush=True)
    return old["rows"]


def recipe_from(name: str, options: dict):
    """The base preset (``recipe``, default fast) with the remaining KEY=VALUE fields, named base+NAME."""
    base = pt.get_recipe(options.pop("recipe", "fast"))
    return dataclasses.replace(base, name=f"{base.name}+{name}", **{k: value(k, v) for k, v in options.items()})


def save(name: str, summary: dict) -> None:
    """Write bench/results/recipes/NAME.json whole, never half (a kill mid-write keeps the last one)."""
    FOLDER.mkdir(parents=True, exist_ok=True)
    tmp = FOLDER / f"{name}.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1) + "\n")
    os.replace(tmp, FOLDER / f"{name}.json")


if __name__ == "__main__":
    main()
