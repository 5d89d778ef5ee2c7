"""What each dtype check reads while a group is exact in the compute dtype but not yet solved.

One unit of a capacity sweep, rerun with every check of the stop rule logged: at each check,
each check dtype's read of every text alone (accuracy, smallest margin), a float32 read of e and
m rounded to bfloat16, and one with the weights rounded to bfloat16 (where bf16's difference comes
from), and whether the check passed. The texts are those `prototokens capacity --source SOURCE --texts K` samples.

    .venv/bin/python bench/dtype_checks.py --source books --texts 3 --n 32 --shared-m --out bench/results/dtype-checks-books-shared-n32.jsonl
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import time

import torch

import prototokens as pt
from prototokens.model import FrozenLM
from prototokens.studies import capacity
from prototokens.studies.common import sample

optimize = importlib.import_module("prototokens.optimize")  # the module; prototokens.optimize is the function


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", default="books")
    p.add_argument("--texts", type=int, default=3)
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shared-m", action="store_true")
    p.add_argument("--recipe", default="fast")
    p.add_argument("--out", required=True)
    args = p.parse_args()

    lm = pt.load_model(dtype="float32")
    rounded_weights = FrozenLM(copy.deepcopy(lm.model), lm.tokenizer, lm.name)
    with torch.no_grad():
        for w in rounded_weights.model.parameters():
            w.copy_(w.bfloat16().float())
    config = capacity.Config(source=args.source, texts=args.texts, shared_m=args.shared_m)
    texts = sample(lm, config, config.texts, config.grid[-1], config.context_tokens)
    targets = [t.target_ids[: args.n] for t in texts]
    recipe = pt.get_recipe(args.recipe)
    out = open(args.out, "w")
    head = {"texts": [t.id for t in texts], "n": args.n, "seed": args.seed, "shared_m": args.shared_m,
            "recipe": recipe.label, "compute": lm.in_dtype(recipe.dtype).dtype_name}
    out.write(json.dumps(head) + "\n")
    print(head, flush=True)
    checked = optimize._margins_everywhere

    def logged(checks, layout, vectors, group, recipe, known=None):
        reads = {}
        for c in checks:
            rows = [optimize.evaluate(c, layout, {n: v[k:k + 1] for n, v in vectors.items()}, [group[k]]) for k in range(len(group))]
            reads[c.dtype_name] = [[round(float(s.accuracy[0]), 4), round(float(s.margin[0]), 3)] for s in rows]
        # float32 passes with bf16's rounding of the inputs (e and m), or of the weights: where bf16's misreads come from
        for name, model, inputs in (("float32, inputs in bfloat16", lm, {n: v.bfloat16().float() for n, v in vectors.items()}),
                                    ("float32, weights rounded to bfloat16", rounded_weights, vectors)):
            s = optimize.evaluate(model, layout, inputs, group)
            reads[name] = [[round(a, 4), round(g, 3)] for a, g in zip(s.accuracy.tolist(), s.margin.tolist())]
        compute = optimize.evaluate(lm.in_dtype(recipe.dtype), layout, vectors, group)
        found = checked(checks, layout, vectors, group, recipe, known)
        line = {"t": round(time.perf_counter() - started, 1), "compute_batch": [[round(a, 4), round(g, 3)] for a, g in
                zip(compute.accuracy.tolist(), compute.margin.tolist())], "alone": reads, "passed": found is not None}
        out.write(json.dumps(line) + "\n")
        out.flush()
        print(line, flush=True)
        return found

    optimize._margins_everywhere = logged
    started = time.perf_counter()
    fit = pt.optimize(lm, targets, recipe=recipe, seed=args.seed, shared="m" if args.shared_m else None, progress=True)
    end = {"outcomes": [o.to_dict() for o in fit.outcomes], "seconds": round(time.perf_counter() - started, 1)}
    out.write(json.dumps(end) + "\n")
    print(end, flush=True)


if __name__ == "__main__":
    main()
