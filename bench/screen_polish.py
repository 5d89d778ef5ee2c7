"""Screen changes to `polish` with bench/recipe_search.py: a balanced objective (the polish
pass's objective scaled down to the compute pass's, row by row); with ``polish_lr=F`` a smaller
step (each text's learning rate times F from its first polished step on); with
``polish_from=A`` an earlier start (a text polishes from the first step its compute pass reads
at least a fraction A of its targets, not only once it reads all of them); with
``polish_ramp=R`` a gradual one (the polish objective's weight rises from 1/R to 1 over a text's
first R polished steps); with ``noise=S`` a compute pass that trains through noise of rounding's
kind (each linear's and decoder layer's output times 1 + S N(0, 1)), so that a state fp32 reads
may already read in bf16 when polish would begin.

    .venv/bin/python bench/screen_polish.py NAME [polish_lr=F] [polish_from=A] [polish_ramp=R] [noise=S] [KEY=VALUE ...]   # then recipe_search's arguments

When a text first reads exactly in the compute dtype, `polish` adds the objective of a pass in
the other check dtype (bf16 on a CPU without bf16 units). Its first update can throw the state
away: a 32-token passage read at 0.97 in fp32 read at 0.28 one step after polish began, and took
115 more steps to be solved in both dtypes (the demo of a fresh clone, fast v10, AVX2). The
hypothesis screened here: the other dtype's objective, large where it misreads, outweighs the
compute pass's. So the polish objective of each row is multiplied by min(1, compute objective /
polish objective), both detached. (At N = 32 a tie, so not the cause: bench/RESULTS.md.)
The second: the polish pass's gradient is ten times the compute pass's, and consistent, so
within a step or two AdamW moves every direction by its full learning rate along it (the demo:
updates 4-8x their size before polish). A text runs alone in recipe_search, so one optimiser is
under way at a time, and its rate is scaled once its ``_polished`` first adds a pass.

Patches ``prototokens.optimize._polished`` (and, with ``polish_lr``, the optimisers' rate; with
``polish_from``, ``evaluate`` to see each step's compute pass; with ``polish_lr`` and
``polish_ramp``, ``build_optimizer`` to know a new seed; with ``noise``, ``compute_model`` to
hook its modules) for this process only; same JSON as recipe_search
(bench/results/recipes/NAME.json), with the patches named in its ``patch`` field. Findings:
bench/RESULTS.md, the sections on `polish` (none of these a lever at N = 32).
"""

from __future__ import annotations

import sys

import torch

import recipe_search
from prototokens import optimizers
from prototokens.optimize import evaluate

optimize = sys.modules["prototokens.optimize"]  # the module: `prototokens.optimize` is the function


def weighted(weight):
    """``optimize._polished`` with each row's polish objective times ``weight(rows, compute
    objective, polish objective)``: the batch rows polishing, and their two objectives detached."""

    def polished(objective, polish, polishing, groups, active, layout, vectors, targets, recipe):
        ks = [k for g in groups if g[0] in polishing for k, a in enumerate(active) if a in g]
        if not (polish and ks):
            return objective, {}
        at = torch.tensor(ks, device=objective.device)
        mine = {n: v[at] for n, v in vectors.items()}
        base, seen = objective[at].detach(), {}
        for lm in polish:
            extra = evaluate(lm, layout, mine, [targets[k] for k in ks], *recipe.objective)
            objective = objective.index_add(0, at, weight([active[k] for k in ks], base, extra.objective.detach()) * extra.objective)
            if lm.batch_invariant:
                seen[lm] = dict(zip(ks, zip(extra.accuracy.tolist(), extra.margin.tolist())))
        return objective, seen

    return polished


# each row's polish objective at most its compute objective
balanced = weighted(lambda rows, base, extra: (base / extra.clamp_min(1e-12)).clamp(max=1.0))


def ramped(steps: int) -> None:
    """Patch: a row's polish objective weighs its polished steps so far over ``steps``, up to 1,
    so that AdamW's second moment grows with the new gradient instead of lagging it."""
    age, build = {}, optimize.build_optimizer

    def build_optimizer(*args):
        age.clear()  # a new seed: its rows start again
        return build(*args)

    def weight(rows, base, extra):
        for a in rows:
            age[a] = age.get(a, 0) + 1
        return torch.tensor([min(1.0, age[a] / steps) for a in rows], device=extra.device)

    optimize.build_optimizer, optimize._polished = build_optimizer, weighted(weight)


def slowed(factor: float) -> None:
    """Patch: the optimiser under way steps at ``factor`` times its rate once polish has begun."""
    under_way = {}
    build, plain, rate = optimize.build_optimizer, optimize._polished, optimizers.RowAdamW.lr

    def build_optimizer(*args):
        under_way["optimizer"] = o = build(*args)
        o.polishing = False
        return o

    def polished(objective, polish, polishing, *rest):
        under_way["optimizer"].polishing |= bool(polish and polishing)
        return plain(objective, polish, polishing, *rest)

    def lr(self, i, steps):
        return rate(self, i, steps) * (factor if self.polishing else 1.0)

    optimize.build_optimizer, optimize._polished, optimizers.RowAdamW.lr = build_optimizer, polished, lr


def earlier(fraction: float) -> None:
    """Patch: a group polishes from the first step its compute pass reads at least ``fraction``
    of each member's targets (``_run`` adds it once it reads all of them)."""
    compute_pass = {}
    score, plain = optimize.evaluate, optimize._polished

    def evaluate(*args, **kwargs):
        compute_pass["scores"] = scores = score(*args, **kwargs)
        return scores

    def polished(objective, polish, polishing, groups, active, *rest):
        accuracy = compute_pass["scores"].accuracy.tolist()  # the pass _run made just before
        for group in (g for g in groups if g[0] in active):
            if all(accuracy[active.index(a)] >= fraction for a in group):
                polishing.add(group[0])
        return plain(objective, polish, polishing, groups, active, *rest)

    optimize.evaluate, optimize._polished = evaluate, polished


def noisy(sigma: float) -> None:
    """Patch: the compute pass, where it takes gradients, multiplies the output of every linear
    and every decoder layer by 1 + ``sigma`` N(0, 1), elementwise, so that the optimiser seeks
    states that rounding of about that size does not misread (bf16 rounds each value by up to
    2^-9 of it, a std of 0.0011). Checks and decodes, without gradients, read the model as it is."""
    build = optimize.compute_model

    def jitter(module, args, output):
        if not torch.is_grad_enabled():
            return output
        if isinstance(output, tuple):
            return (output[0] * (1 + sigma * torch.randn_like(output[0])), *output[1:])
        return output * (1 + sigma * torch.randn_like(output))

    def compute_model(lm, recipe):
        model = build(lm, recipe)
        if not getattr(model, "jittered", False):
            lm.in_dtype("bfloat16")  # made before the hooks, which a copy would carry
            layers = model.model.model.layers
            for module in (*(m for m in model.model.modules() if isinstance(m, torch.nn.Linear)), *layers):
                module.register_forward_hook(jitter)
            model.jittered = True
        return model

    optimize.compute_model = compute_model


def option(name: str) -> float | None:
    """The value of ``name=F`` among the arguments (removed from them), or None."""
    value = next((float(a.split("=", 1)[1]) for a in sys.argv[2:] if a.startswith(f"{name}=")), None)
    sys.argv = [a for a in sys.argv if not a.startswith(f"{name}=")]
    return value


if __name__ == "__main__":
    factor, fraction, ramp, sigma = option("polish_lr"), option("polish_from"), option("polish_ramp"), option("noise")
    patches = []
    if sigma is not None:
        noisy(sigma)
        patches.append(f"noise={sigma}")
    if ramp is not None:  # first: the patches below wrap the _polished it sets
        ramped(int(ramp))
        patches.append(f"polish_ramp={int(ramp)}")
    if factor is not None:
        slowed(factor)
        patches.append(f"polish_lr={factor}")
    if fraction is not None:
        earlier(fraction)
        patches.append(f"polish_from={fraction}")
    if not patches:
        optimize._polished = balanced
    patch = " ".join(patches) or "balanced"
    save = recipe_search.save
    recipe_search.save = lambda name, summary: save(name, summary | {"patch": patch})
    recipe_search.main()
