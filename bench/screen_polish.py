"""Screen a balanced `polish` with bench/recipe_search.py: the polish pass's objective scaled down
to the compute pass's, row by row.

    .venv/bin/python bench/screen_polish.py NAME [KEY=VALUE ...]   # recipe_search's arguments

When a text first reads exactly in the compute dtype, `polish` adds the objective of a pass in
the other check dtype (bf16 on a CPU without bf16 units). Its first update can throw the state
away: a 32-token passage read at 0.97 in fp32 read at 0.28 one step after polish began, and took
115 more steps to be solved in both dtypes (the demo of a fresh clone, fast v10, AVX2). The
hypothesis screened here: the other dtype's objective, large where it misreads, outweighs the
compute pass's. So the polish objective of each row is multiplied by min(1, compute objective /
polish objective), both detached. (At N = 32 a tie, so not the cause: bench/RESULTS.md.) Patches ``prototokens.optimize._polished`` for
this process only; same JSON as recipe_search (bench/results/recipes/NAME.json).
"""

from __future__ import annotations

import sys

import torch

import recipe_search
from prototokens.optimize import evaluate

optimize = sys.modules["prototokens.optimize"]  # the module: `prototokens.optimize` is the function


def balanced(objective, polish, polishing, groups, active, layout, vectors, targets, recipe):
    """``optimize._polished`` with each row's polish objective at most its compute objective."""
    ks = [k for g in groups if g[0] in polishing for k, a in enumerate(active) if a in g]
    if not (polish and ks):
        return objective, {}
    at = torch.tensor(ks, device=objective.device)
    mine = {n: v[at] for n, v in vectors.items()}
    base, seen = objective[at].detach(), {}
    for lm in polish:
        extra = evaluate(lm, layout, mine, [targets[k] for k in ks], *recipe.objective)
        weight = (base / extra.objective.detach().clamp_min(1e-12)).clamp(max=1.0)
        objective = objective.index_add(0, at, weight * extra.objective)
        if lm.batch_invariant:
            seen[lm] = dict(zip(ks, zip(extra.accuracy.tolist(), extra.margin.tolist())))
    return objective, seen


if __name__ == "__main__":
    optimize._polished = balanced
    recipe_search.main()
