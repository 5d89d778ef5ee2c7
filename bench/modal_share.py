"""Can a collapsing seed be told apart early? The share of output positions whose greedy token
is the most common one, over a seed's first steps (``fast``, default layout).

    OMP_NUM_THREADS=1 .venv/bin/python bench/modal_share.py [--n 64] [--texts books:2,generated:1,heldout:1] [--steps 120] [--seeds 0,1]

A collapsed seed writes (nearly) one token everywhere; if only collapsing seeds did so early on,
a restart rule could stop them within a few dozen steps instead of ``patience``'s 200.
Prints, per seed and at a few steps, each text's modal share and accuracy.
"""

from __future__ import annotations

import argparse
import sys

import torch

import prototokens as pt
from latency import texts_for

optimize_module = sys.modules["prototokens.optimize"]  # the package's ``optimize`` names the function
SHOWN = (0, 5, 10, 20, 30, 50, 80, 120)


class Enough(Exception):
    pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--texts", default="books:2,generated:1,heldout:1")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--seeds", default="0,1")
    args = parser.parse_args()
    lm = pt.load_model(dtype="float32")
    targets = [lm.tokenize(t)[: args.n] for _, t in texts_for(lm, args.texts, args.n, 0)]
    evaluate, log = optimize_module.evaluate, []

    def logged(model, layout, vectors, texts, *rest, **options):
        scores = evaluate(model, layout, vectors, texts, *rest, **options)
        with torch.no_grad():
            width = max(len(t) for t in texts)
            greedy = model.logits(layout.inputs(vectors, texts, model))[:, layout.outputs(width)].argmax(-1)
            share = [float((row == row.mode().values).float().mean()) for row in greedy]
        log.append((share, scores.accuracy.tolist()))
        if len(log) > args.steps:
            raise Enough
        return scores

    optimize_module.evaluate = logged
    for seed in map(int, args.seeds.split(",")):
        log.clear()
        try:
            pt.optimize(lm, targets, seed=seed, progress=False)
        except Enough:
            pass
        for step in (s for s in SHOWN if s < len(log)):
            share, accuracy = log[step]
            print(seed, step, "modal share", [round(x, 2) for x in share], "acc", [round(x, 2) for x in accuracy],
                  flush=True)


if __name__ == "__main__":
    main()
