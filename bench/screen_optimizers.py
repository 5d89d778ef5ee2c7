"""Screen optimisers that are not in the package's registry, with bench/recipe_search.py.

    .venv/bin/python bench/screen_optimizers.py NAME optimizer=OPTIMIZER [KEY=VALUE ...]

Registers the variants below in ``prototokens.optimizers.OPTIMIZERS`` for this process, then runs
recipe_search (same arguments, same JSON in bench/results/recipes/NAME.json):

- ``adamw-elr``: the default AdamW with e's learning rate one tenth of m's (e starts at
  the attention sink token; does moving it slowly spare the first steps?).
- ``sf-adamw``: Defazio et al.'s schedule-free AdamW (2024). The parameter holds y,
  where the gradient is taken, between the AdamW iterate z and x, the average of the z iterates
  weighted by the largest learning rate so far squared; use it with ``schedule=constant``.
- ``lion``: Chen et al.'s Lion (2023): the sign of an interpolated momentum, so every
  coordinate moves by the learning rate each step; betas are Lion's (interpolation, momentum).
- ``eigen-adamw-everyK`` (K = 1, 3, 20): eigen-adamw with its eigenbasis refreshed every K steps
  instead of 10 (each refresh costs one d_model x d_model eigendecomposition per vector).
- ``eigen-adamw-joint``: eigen-adamw on e and m as one vector of 2 d_model coordinates, so its
  eigenbasis also follows how e's and m's gradients vary together (one 2 d_model x 2 d_model
  eigendecomposition per text every 10 steps, where eigen-adamw does two of d_model).
- ``eigen-adamw-m20``: eigen-adamw from an m twice as long as the recipe's init draws it (the
  optimiser is built on the fresh start and scales the last vector, m, in place; solved m's end
  about 2.5x as long as they start).

Each keeps a step count per row as RowAdamW does, so a text's run does not depend on its batch.
"""

from __future__ import annotations

import torch

import prototokens.optimizers as optimizers
import recipe_search


def _per_row(p: torch.Tensor) -> torch.Tensor:
    return torch.zeros(p.shape[0], *[1] * (p.dim() - 1), device=p.device)


class SlowE(optimizers.RowAdamW):
    """RowAdamW with the first parameter's (e's) learning rate scaled by ``E_SCALE``."""

    E_SCALE = 0.1

    def lr(self, i, steps):
        return super().lr(i, steps) * self.E_SCALE if i == 0 else super().lr(i, steps)


class ScheduleFreeAdamW:
    """Schedule-free AdamW per row: z takes AdamW-without-momentum steps at y, x averages z, and
    y = (1 - beta1) z + beta1 x is what the forward pass sees."""

    STATE = ("z", "x", "v", "t", "weight_sum", "lr_max")

    def __init__(self, params, recipe):
        self.params, self.recipe = params, recipe
        self.z = [p.detach().clone() for p in params]
        self.x = [p.detach().clone() for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t, self.weight_sum, self.lr_max = ([_per_row(p) for p in params] for _ in range(3))

    @torch.no_grad()
    def step(self, rows_per_param):
        r = self.recipe
        b1, b2 = r.betas
        for i, (p, rows) in enumerate(zip(self.params, rows_per_param)):
            z, x, v, t, ws, lr_max = (getattr(self, kind)[i] for kind in self.STATE)
            g, y = p.grad[rows], p[rows]
            t[rows] += 1
            tr = t[rows]
            lr = optimizers.row_lr(r, tr)
            v[rows] = v[rows] * b2 + g * g * (1 - b2)
            z[rows] = z[rows] - lr * (g / ((v[rows] / (1 - b2 ** tr)).sqrt() + r.eps) + r.weight_decay * y)
            lr_max[rows] = torch.maximum(lr_max[rows], lr)
            ws[rows] = ws[rows] + lr_max[rows] ** 2
            c = lr_max[rows] ** 2 / ws[rows]
            x[rows] = (1 - c) * x[rows] + c * z[rows]
            p[rows] = (1 - b1) * z[rows] + b1 * x[rows]
            p.grad = None

    def state_dict(self):
        return {f"{kind}.{i}": x for kind in self.STATE for i, x in enumerate(getattr(self, kind))}

    def load_state_dict(self, state):
        for kind in self.STATE:
            for i, x in enumerate(getattr(self, kind)):
                x.copy_(state[f"{kind}.{i}"])


class Lion:
    """Lion per row: p -= lr (sign(b1 m + (1 - b1) g) + wd p), then m = b2 m + (1 - b2) g."""

    STATE = ("m", "t")

    def __init__(self, params, recipe):
        self.params, self.recipe = params, recipe
        self.m = [torch.zeros_like(p) for p in params]
        self.t = [_per_row(p) for p in params]

    @torch.no_grad()
    def step(self, rows_per_param):
        r = self.recipe
        b1, b2 = r.betas
        for p, m, t, rows in zip(self.params, self.m, self.t, rows_per_param):
            g = p.grad[rows]
            t[rows] += 1
            lr = optimizers.row_lr(r, t[rows])
            p[rows] = p[rows] * (1 - lr * r.weight_decay) - lr * (m[rows] * b1 + g * (1 - b1)).sign()
            m[rows] = m[rows] * b2 + g * (1 - b2)
            p.grad = None

    state_dict, load_state_dict = ScheduleFreeAdamW.state_dict, ScheduleFreeAdamW.load_state_dict


def eigen_every(k: int) -> type:
    """EigenAdamW with its eigenbasis refreshed every ``k`` steps."""
    return type(f"EigenAdamWEvery{k}", (optimizers.EigenAdamW,), {"EVERY": k})


class JointEigenAdamW:
    """EigenAdamW on every trainable vector of a row concatenated into one (rows per text only:
    a vector the batch shares has another row count, and is refused)."""

    def __init__(self, params, recipe):
        if len({p.shape[0] for p in params}) > 1:
            raise ValueError("eigen-adamw-joint needs one row per text in every vector (nothing shared)")
        self.params = params
        self.joint = torch.cat([p.detach().flatten(1) for p in params], 1)
        self.inner = optimizers.EigenAdamW([self.joint], recipe)

    @torch.no_grad()
    def step(self, rows_per_param):
        self.joint.copy_(torch.cat([p.flatten(1) for p in self.params], 1))
        self.joint.grad = torch.cat([p.grad.flatten(1) for p in self.params], 1)
        self.inner.step(rows_per_param[:1])  # the same rows in every vector
        for p, part in zip(self.params, self.joint.split([p[0].numel() for p in self.params], 1)):
            p.copy_(part.view_as(p))
            p.grad = None

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, state):
        self.inner.load_state_dict(state)


class LongM(optimizers.EigenAdamW):
    """EigenAdamW whose first act is to scale the last vector (m) of every row by ``M_SCALE``."""

    M_SCALE = 2.0

    def __init__(self, params, recipe):
        with torch.no_grad():
            params[-1].mul_(self.M_SCALE)
        super().__init__(params, recipe)


optimizers.OPTIMIZERS |= {"adamw-elr": SlowE, "sf-adamw": ScheduleFreeAdamW, "lion": Lion, "eigen-adamw-joint": JointEigenAdamW,
                          **{f"eigen-adamw-every{k}": eigen_every(k) for k in (1, 3, 20)},
                          "eigen-adamw-m20": LongM}

if __name__ == "__main__":
    recipe_search.main()
