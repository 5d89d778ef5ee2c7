"""What `polish`'s first updates do: one text, one seed of `fast`, every step recorded.

    .venv/bin/python bench/polish_shock.py NAME [tokens=32] [book=alice29] [clip=C] [polish_lr=F]

The demo's passage by default (the same ``--book`` and ``--tokens``). Per step: token accuracy
and loss in the compute dtype, the objective without and with the polish pass, the polish
pass's accuracy and smallest margin (``polish_read``, where it ran), and for each
vector the gradient's norm (before any clip), the update's norm and whether the
eigenbasis was refreshed. Two patches for this process only: ``clip=C`` scales each step's
gradient to at most C times the root of its running mean square norm (an EMA with beta2 of the
unclipped norms), ``polish_lr=F`` multiplies the learning rate by F from the first polished
step on. Writes bench/results/polish-shock/NAME.json and prints the steps around polish's start.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

import prototokens as pt
from prototokens import optimizers
from prototokens.data import book_text, passage
from screen_polish import slowed

optimize = sys.modules["prototokens.optimize"]  # the module: `prototokens.optimize` is the function
FOLDER = Path("bench/results/polish-shock")


def record(clip: float | None) -> tuple[list, list]:
    """Patch the optimisers and ``_polished`` to log each step; the two logs, filled as it runs."""
    steps, objectives = [], []
    polished = optimize._polished

    def logged(original):
        def step(self, rows_per_param):
            grads = [float(p.grad.norm()) for p in self.params]
            if clip is not None:
                _clip(self, rows_per_param, clip)
            before = [p.detach().clone() for p in self.params]
            original(self, rows_per_param)
            t = int(self.t[0].flatten()[0])
            steps.append({"t": t, "refresh": isinstance(self, optimizers.EigenAdamW) and t % self.EVERY == 0, "grad": grads,
                          "update": [float((p.detach() - b).norm()) for p, b in zip(self.params, before)]})
        return step

    def polishing(objective, *args):
        score, passes = optimize.evaluate, []
        optimize.evaluate = lambda *a, **k: passes.append(score(*a, **k)) or passes[-1]  # the polish pass, if any
        try:
            out, seen = polished(objective, *args)
        finally:
            optimize.evaluate = score
        read = [float(passes[0].accuracy[0]), float(passes[0].margin[0])] if passes else None
        objectives.append([float(objective.detach().sum()), float(out.detach().sum()), read])
        return out, seen

    for cls in (optimizers.RowAdamW, optimizers.EigenAdamW):
        cls.step = logged(cls.__dict__["step"])
    optimize._polished = polishing
    return steps, objectives


@torch.no_grad()
def _clip(opt, rows_per_param, c: float) -> None:
    """Each row's gradient at most ``c`` times the root of its running mean square norm."""
    b2 = opt.recipe.betas[1]
    if not hasattr(opt, "grad_sq"):
        opt.grad_sq = [torch.zeros_like(t) for t in opt.t]
    for p, t, sq, rows in zip(opt.params, opt.t, opt.grad_sq, rows_per_param):
        g, n = p.grad[rows], t[rows]
        norm_sq = g.flatten(1).square().sum(1).view_as(n)
        limit = c * c * sq[rows] / (1 - b2 ** n).clamp_min(1e-12)
        scale = torch.where((n > 0) & (norm_sq > limit), (limit / norm_sq.clamp_min(1e-30)).sqrt(), torch.ones_like(n))
        sq[rows] = sq[rows] * b2 + norm_sq * (1 - b2)
        p.grad[rows] = g * scale


def main():
    name, options = sys.argv[1], dict(a.split("=", 1) for a in sys.argv[2:])
    clip, polish_lr = (float(options[k]) if k in options else None for k in ("clip", "polish_lr"))
    if polish_lr is not None:
        slowed(polish_lr)  # screen_polish.py's patch, which the log below wraps
    steps, objectives = record(clip)
    lm = pt.load_model(dtype="float32")
    target = passage(lm, book_text(options.get("book", "alice29")), int(options.get("tokens", 32)), start_char=1000)
    started = time.perf_counter()
    fit = pt.optimize(lm, [target], recipe=pt.get_recipe("fast"), seed=0, restarts=1, progress=False, trajectory=True)
    outcome = fit.outcomes[0].to_dict()
    reads = [[t.step, t.accuracy, t.loss] for t in fit.trajectory[0]]
    rows = [s | {"step": k, "accuracy": reads[k][1], "loss": reads[k][2], "objective": objectives[k][:2], "polish_read": objectives[k][2]}
            for k, s in enumerate(steps)]
    FOLDER.mkdir(parents=True, exist_ok=True)
    (FOLDER / f"{name}.json").write_text(json.dumps(
        {"name": name, "argv": sys.argv[1:], "recipe": pt.get_recipe("fast").to_dict(), "tokens": len(target),
         "threads": torch.get_num_threads(), "wall_seconds": time.perf_counter() - started, "outcome": outcome,
         "steps": rows}, indent=None) + "\n")
    first = next((r["step"] for r in rows if r["objective"][0] != r["objective"][1]), None)
    print(f"{name}: {outcome['status']} after {outcome['total_steps']} steps; polish from step {first}")
    margin = pt.get_recipe("fast").margin
    bf16 = [r for r in rows if r["polish_read"]]
    exact = next((r["step"] for r in bf16 if r["polish_read"][0] == 1.0), None)
    ahead = next((r["step"] for r in bf16 if r["polish_read"][0] == 1.0 and r["polish_read"][1] >= margin), None)
    print(f"  the polish pass first reads it exactly at step {exact}, with the {margin} margin at step {ahead}")
    for r in rows[max(0, (first or 0) - 3): (first or 0) + 8]:
        print(f"  step {r['step']}: accuracy {r['accuracy']:.3f}, objective {r['objective'][0]:.3f} -> {r['objective'][1]:.3f}, "
              f"gradient {r['grad'][0]:.3g} (e) {r['grad'][1]:.3g} (m), update {r['update'][0]:.3g} {r['update'][1]:.3g}"
              f"{', basis refreshed' if r['refresh'] else ''}")


if __name__ == "__main__":
    main()
