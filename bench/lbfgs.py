"""L-BFGS on (e, m): is a quasi-Newton method a speed lever for one-step encoding?

    OMP_NUM_THREADS=1 .venv/bin/python bench/lbfgs.py [--n 32] [--texts books-0,books-1,generated-0] [--history 20] [--evals 600]

(e, m) are only 2 x d_model numbers and the objective is deterministic, the setting where
L-BFGS usually beats Adam. This runs torch.optim.LBFGS (strong-Wolfe line search) on one text
at a time from `fast`'s start (seed 0) and objective (first target x4), on the unselected texts
of bench/RESULTS.md (``texts_for(..., passages=7)``), in fp32, until one fp32 pass writes the
text with every target ahead by `fast`'s margin. Its cost is the number of forward+backward
evaluations, line search included: fp32-step equivalents, comparable with the fp32 rows of
bench/results/recipes/n32-float32.json. Writes bench/results/lbfgs-nN.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import prototokens as pt
from latency import texts_for
from prototokens.optimize import _solved, evaluate, initial_vectors


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--texts", default="books-0,books-1,generated-0", help="labels among books-0..3, generated-0..3")
    ap.add_argument("--history", type=int, default=20)
    ap.add_argument("--evals", type=int, default=600, help="most evaluations a text")
    args = ap.parse_args()
    lm = pt.load_model(dtype="float32")
    layout, recipe = pt.get_layout(pt.layout.DEFAULT_LAYOUT), pt.get_recipe("fast")
    texts = dict(texts_for(lm, "books:4,generated:4", args.n, 7))
    rows = []
    for label in args.texts.split(","):
        row = {"text": label, **lbfgs(lm, layout, recipe, lm.tokenize(texts[label])[: args.n], args.history, args.evals)}
        rows.append(row)
        print(f"{label}: solved at evaluation {row['solved_at_evaluation']} of {row['evaluations']}, "
              f"best accuracy {row['best_accuracy']:.3f}", flush=True)
    out = Path(f"bench/results/lbfgs-n{args.n}.json")
    out.write_text(json.dumps({"argv": vars(args), "threads": torch.get_num_threads(), "rows": rows}, indent=1) + "\n")


def lbfgs(lm, layout, recipe, ids: list[int], history: int, evals: int) -> dict:
    """L-BFGS from the recipe's seed-0 start on one text, until solved in fp32 or ``evals`` evaluations."""
    vectors = initial_vectors(lm, recipe, 0, layout.vectors, {k: 1 for k in layout.vectors})
    opt = torch.optim.LBFGS(list(vectors.values()), lr=1, history_size=history, max_iter=evals, max_eval=evals,
                            tolerance_grad=0, tolerance_change=0, line_search_fn="strong_wolfe")
    log, solved, started = [], [], time.perf_counter()

    def closure():
        opt.zero_grad()
        s = evaluate(lm, layout, vectors, [ids], recipe.first_weight)
        log.append([round(float(s.loss[0]), 4), float(s.accuracy[0]), round(float(s.margin[0]), 3)])
        s.objective.sum().backward()
        if not solved and _solved(log[-1][1], log[-1][2], recipe):
            solved.append(len(log))
        if solved:  # a zero gradient ends L-BFGS at once
            for v in vectors.values():
                v.grad.zero_()
        return s.objective.sum()

    opt.step(closure)
    return {"solved_at_evaluation": solved[0] if solved else None, "evaluations": len(log),
            "best_accuracy": max(a for _, a, _ in log), "seconds": time.perf_counter() - started, "every_25": log[24::25]}


if __name__ == "__main__":
    main()
