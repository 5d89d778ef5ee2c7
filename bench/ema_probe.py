"""Does an average of the iterates write a text before the iterate does? A passive probe.

    .venv/bin/python bench/ema_probe.py NAME [--n 64] [--texts books:3] [--passages 1] [--seed 0]
                                        [--betas 0.9,0.97,0.99] [--max-steps 2000] [--lr 1]

One seed, one start per text (the seed's own: no race, no polish), `fast`'s optimiser at the
text's length, run exactly as `optimize` runs it. Beside the iterate it keeps an exponential
moving average of (e, m) for each beta, which the optimiser never sees, and every 10 steps reads
each average through the compute pass. The first step at which a state is exact with `fast`'s
margin there is then checked the way `optimize` checks a text (one pass in float32 and one in
bfloat16, each text alone; their reads are recorded for every state exact in the compute pass):
the step at which each state would have stopped the text. `--lr` scales `fast`'s lr. Writes
bench/results/ema-probe/NAME.json after every text; rerun to resume.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

import torch

import prototokens as pt
from latency import texts_for
from prototokens.optimize import _solved, check_models, compute_model, evaluate, initial_vectors
from prototokens.optimizers import build_optimizer

FOLDER = Path("bench/results/ema-probe")
EVERY = 10


def probe(lm, ids, recipe, seed, betas, max_steps):
    layout = pt.get_layout(pt.layout.DEFAULT_LAYOUT)
    compute, checks = compute_model(lm, recipe), check_models(lm, recipe)
    params = initial_vectors(lm, recipe, seed, layout.vectors, {n: 1 for n in layout.vectors})
    optimizer = build_optimizer(list(params.values()), recipe, lm)
    states = {"iterate": params} | {f"ema{b}": {n: p.detach().clone() for n, p in params.items()} for b in betas}
    trace, stopped = [], {}
    for step in range(max_steps + 1):
        scores = evaluate(compute, layout, params, [ids], *recipe.objective)
        if step % EVERY == 0:
            row = {"step": step}
            for name, vectors in states.items():
                with torch.no_grad():
                    s = scores if name == "iterate" else evaluate(compute, layout, vectors, [ids])
                acc, margin = float(s.accuracy[0]), float(s.margin[0])
                row[name] = [round(acc, 4), round(margin, 3), round(float(s.loss[0]), 4)]
                if acc == 1.0:  # what each dtype's own pass reads of it: (accuracy, smallest lead)
                    with torch.no_grad():
                        reads = [evaluate(c, layout, {n: v.detach() for n, v in vectors.items()}, [ids]) for c in checks]
                    row[name + "@checks"] = {c.dtype_name: [round(float(r.accuracy[0]), 4), round(float(r.margin[0]), 3)]
                                             for c, r in zip(checks, reads)}
                    if name not in stopped and all(_solved(float(r.accuracy[0]), float(r.margin[0]), recipe) for r in (s, *reads)):
                        stopped[name] = step
                row[name].append(stopped.get(name))
            trace.append(row)
            print(step, {k: v[:2] for k, v in row.items() if k != "step" and "@" not in k}, flush=True)
            if len(stopped) == len(states):
                break
        scores.objective.sum().backward()
        optimizer.step([torch.zeros(1, dtype=torch.long)] * len(params))
        with torch.no_grad():
            for b in betas:
                for n, p in params.items():
                    states[f"ema{b}"][n].lerp_(p, 1 - b)
    return {"stopped_at": stopped, "trace": trace}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--texts", default="books:3")
    ap.add_argument("--passages", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--betas", default="0.9,0.97,0.99")
    ap.add_argument("--max-steps", type=int, default=2000)
    ap.add_argument("--lr", type=float, help="fast's lr times this (default 1)", default=1.0)
    args = ap.parse_args()
    path = FOLDER / f"{args.name}.json"
    out = json.loads(path.read_text()) if path.exists() else {"args": vars(args), "rows": []}
    lm = pt.load_model(dtype="float32")
    recipe = pt.get_recipe("fast").at_length(args.n)
    recipe = dataclasses.replace(recipe, lr=recipe.lr * args.lr)
    betas = [float(b) for b in args.betas.split(",")]
    for label, text in texts_for(lm, args.texts, args.n, args.passages)[len(out["rows"]):]:
        print(label, flush=True)
        ids = lm.tokenize(text)[: args.n]
        out["rows"].append({"text": label, "n": len(ids), **probe(lm, ids, recipe, args.seed, betas, args.max_steps)})
        FOLDER.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".tmp").write_text(json.dumps(out) + "\n")
        os.replace(path.with_suffix(".tmp"), path)


if __name__ == "__main__":
    main()
