"""A low-dimensional reparametrisation, v = W z + b for v in (e, m), against (e, m) themselves.

    OMP_NUM_THREADS=1 .venv/bin/python bench/lowdim.py [--n 32] [--text books-0] [--k 64]

progressive_cramming's low-dimensional trainer learns z (k numbers a vector) and a linear map
(W, b) to the model's width together, and reports more capacity at more steps; trained jointly,
such a product can also speed up gradient descent (an overparametrised linear layer acts as a
preconditioner). This measures the steps to solved for one text of bench/RESULTS.md's unselected
set, in fp32, with torch's AdamW on `fast`'s schedule, objective and start: b starts at `fast`'s
seed-0 start, W at N(0, std(embeddings)^2 / k), z at N(0, 0.01), so v starts near `fast`'s start.
The direct run is the control (the same loop on e and m). Writes bench/results/lowdim-nN.json.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

import prototokens as pt
from latency import texts_for
from prototokens.optimize import _solved, evaluate, initial_vectors


def steps_to_solved(lm, layout, recipe, ids: list[int], k: int | None) -> dict:
    """AdamW on (e, m) directly (``k`` None) or on (z, W, b); the step at which one fp32 pass
    writes the text with every target ahead by the recipe's margin, within its max_steps."""
    start = initial_vectors(lm, recipe, 0, layout.vectors, {name: 1 for name in layout.vectors})
    g = torch.Generator().manual_seed(1)
    if k is None:
        direct = {name: v.detach().clone().requires_grad_() for name, v in start.items()}
        params, vectors = list(direct.values()), lambda: direct
    else:
        b = {name: v.detach().clone().requires_grad_() for name, v in start.items()}
        w = {name: (torch.randn(lm.d_model, k, generator=g) * lm.embedding_std / math.sqrt(k)).requires_grad_() for name in b}
        z = {name: (torch.randn(1, k, generator=g) * 0.1).requires_grad_() for name in b}
        params = [*b.values(), *w.values(), *z.values()]

        def vectors():
            return {name: b[name] + z[name] @ w[name].T for name in b}
    opt = torch.optim.AdamW(params, lr=recipe.lr, betas=recipe.betas, weight_decay=recipe.weight_decay)
    curve = []
    for step in range(recipe.max_steps + 1):
        s = evaluate(lm, layout, vectors(), [ids], recipe.first_weight)
        accuracy, margin = float(s.accuracy[0]), float(s.margin[0])
        curve.append(accuracy)
        if _solved(accuracy, margin, recipe):
            return {"solved_at_step": step, "accuracy_every_50": curve[::50]}
        if step == recipe.max_steps:
            break
        for group in opt.param_groups:
            group["lr"] = recipe.lr_at(step + 1)
        opt.zero_grad()
        s.objective.sum().backward()
        opt.step()
    return {"solved_at_step": None, "final_accuracy": curve[-1], "accuracy_every_50": curve[::50]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--text", default="books-0", help="a label among books-0..3, generated-0..3")
    ap.add_argument("--k", type=int, default=64, help="the dimension of z")
    args = ap.parse_args()
    lm = pt.load_model(dtype="float32")
    layout, recipe = pt.get_layout(pt.layout.DEFAULT_LAYOUT), pt.get_recipe("fast")
    ids = lm.tokenize(dict(texts_for(lm, "books:4,generated:4", args.n, 7))[args.text])[: args.n]
    rows = []
    for k in (None, args.k):
        started = time.perf_counter()
        row = {"k": k, **steps_to_solved(lm, layout, recipe, ids, k), "seconds": time.perf_counter() - started}
        rows.append(row)
        print(f"{'direct' if k is None else f'W z + b, k = {k}'}: solved at step {row['solved_at_step']}", flush=True)
    out = Path(f"bench/results/lowdim-n{args.n}.json")
    out.write_text(json.dumps({"argv": vars(args), "text": args.text, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
