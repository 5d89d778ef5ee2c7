"""The optimisers a recipe can name, in one registry.

An optimiser is built from the trainable tensors (one row per text, or one row for a vector the
batch shares) and the recipe; ``step(rows)`` updates, for each tensor, only the given rows from
their ``.grad`` and then clears the gradients. Rows left out (texts that stopped) keep their
value, their moments and their step count, so a text's run does not depend on its batch.

Adding an optimiser: a class or function with that signature, and one line in ``OPTIMIZERS``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import torch

if TYPE_CHECKING:
    from .model import FrozenLM
    from .recipe import Recipe


class RowOptimizer(Protocol):
    def step(self, rows_per_param: list[torch.Tensor]) -> None:
        """Update the given rows of each parameter from its gradient, then clear the gradients."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The optimiser's state, as named tensors."""

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore a state that ``state_dict`` gave."""


class RowAdamW:
    """AdamW with a step count per row, so that frozen rows get no update, decay or momentum.

    Written by hand, not torch.optim.AdamW: every committed result was made with it, and torch's
    AdamW (one tensor per text) rounds its update in another order, so reruns would not give the
    same records. The learning rate is the recipe's schedule at each row's own step.
    """

    def __init__(self, params: list[torch.Tensor], recipe: "Recipe"):
        self.params, self.recipe = params, recipe
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        self.t = [torch.zeros(p.shape[0], *[1] * (p.dim() - 1), device=p.device) for p in params]

    @torch.no_grad()
    def step(self, rows_per_param: list[torch.Tensor]) -> None:
        r = self.recipe
        b1, b2 = r.betas
        for i, (p, ea, eas, t, rows) in enumerate(zip(self.params, self.exp_avg, self.exp_avg_sq, self.t, rows_per_param)):
            g = p.grad[rows]
            t[rows] += 1
            tr = t[rows]
            lr = self.lr(i, tr)
            ea[rows] = ea[rows] * b1 + g * (1 - b1)
            eas[rows] = eas[rows] * b2 + g * g * (1 - b2)
            denom = (eas[rows] / (1 - b2 ** tr)).sqrt() + r.eps
            p[rows] = p[rows] * (1 - lr * r.weight_decay) - lr * (ea[rows] / (1 - b1 ** tr)) / denom
            p.grad = None

    def lr(self, i: int, steps: torch.Tensor) -> torch.Tensor:
        """Parameter ``i``'s learning rate for rows at these step counts: the recipe's schedule."""
        return row_lr(self.recipe, steps)

    STATE = ("exp_avg", "exp_avg_sq", "t")  # per parameter

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"{kind}.{i}": x for kind in self.STATE for i, x in enumerate(getattr(self, kind))}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for kind in self.STATE:
            for i, x in enumerate(getattr(self, kind)):
                x.copy_(state[f"{kind}.{i}"])


class EigenAdamW(RowAdamW):
    """RowAdamW in the eigenbasis of each row's gradient covariance: SOAP's idea (Vyas et al.,
    2024, Adam in Shampoo's eigenbasis) for a vector, whose covariance is one K x K matrix
    (K = d_model: 576 for SmolLM2). The covariance is an EMA with beta2, its eigenvectors are
    refreshed every ``EVERY`` steps (before the first refresh the basis is the identity, so the
    first steps are RowAdamW's); the momentum lives in the vector's own coordinates, the second
    moment in the eigenbasis and is carried into each new one. Where AdamW scales each
    coordinate, this scales each direction along which the gradients vary.
    """

    EVERY = 10
    STATE = ("exp_avg", "exp_avg_sq", "t", "covariance", "basis")

    def __init__(self, params: list[torch.Tensor], recipe: "Recipe"):
        super().__init__(params, recipe)
        sizes = [p[0].numel() for p in params]
        self.covariance = [torch.zeros(p.shape[0], k, k, device=p.device) for p, k in zip(params, sizes)]
        self.basis = [torch.eye(k, device=p.device).expand(p.shape[0], k, k).clone() for p, k in zip(params, sizes)]

    @torch.no_grad()
    def step(self, rows_per_param: list[torch.Tensor]) -> None:
        r = self.recipe
        b1, b2 = r.betas
        for i, (p, rows) in enumerate(zip(self.params, rows_per_param)):
            ea, eas, t, cov, q = self.exp_avg[i], self.exp_avg_sq[i], self.t[i], self.covariance[i], self.basis[i]
            rows = slice(None) if len(rows) == len(p) else rows  # every row: views, not copies of K x K matrices
            g = p.grad[rows].flatten(1)
            t[rows] += 1
            tr = t[rows].flatten()[:, None]
            cov[rows] = torch.baddbmm(cov[rows], g[:, :, None], g[:, None, :], beta=b2, alpha=1 - b2)
            due = torch.arange(len(p), device=p.device)[rows][tr[:, 0] % self.EVERY == 0]
            if len(due):  # a new basis, and the second moment's diagonal carried into it
                new = torch.linalg.eigh(cov[due])[1]
                turn = new.transpose(1, 2) @ q[due]
                eas[due] = ((turn * turn) @ eas[due].flatten(1)[:, :, None]).view_as(eas[due])
                q[due] = new
            qr = q[rows]
            ea[rows] = ea[rows] * b1 + p.grad[rows] * (1 - b1)
            eas[rows] = eas[rows] * b2 + _rotate(qr.transpose(1, 2), g).square().view_as(eas[rows]) * (1 - b2)
            m = _rotate(qr.transpose(1, 2), ea[rows].flatten(1)) / (1 - b1 ** tr)
            v = eas[rows].flatten(1) / (1 - b2 ** tr)
            update = _rotate(qr, m / (v.sqrt() + r.eps)).view_as(p[rows])
            lr = self.lr(i, t[rows])
            p[rows] = p[rows] * (1 - lr * r.weight_decay) - lr * update
            p.grad = None


def _rotate(matrices: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """Each row of ``vectors`` times its own matrix."""
    return (matrices @ vectors[:, :, None])[..., 0]


def row_lr(recipe: "Recipe", steps: torch.Tensor) -> torch.Tensor:
    """The recipe's learning rate at each row's own step count (a tensor shaped like ``steps``)."""
    return torch.tensor([recipe.lr_at(int(s)) for s in steps.flatten().tolist()], device=steps.device).view_as(steps)


OPTIMIZERS: dict[str, Callable[[list[torch.Tensor], "Recipe"], RowOptimizer]] = {
    "adamw": RowAdamW,
    "eigen-adamw": EigenAdamW,
}


def build_optimizer(params: list[torch.Tensor], recipe: "Recipe", lm: "FrozenLM") -> RowOptimizer:
    """The optimiser ``recipe`` names (a Recipe names only registered ones) on ``params``, the
    vectors of ``lm``, in whose embedding std a relative lr counts."""
    return OPTIMIZERS[recipe.optimizer](params, recipe.for_model(lm))
