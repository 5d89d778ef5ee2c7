"""The autoregressive baseline of Kuratov et al. (arXiv 2502.13063): "cramming" a text into
K trainable [mem] vectors prepended to its own token embeddings.

Training is teacher-forced: inputs [mem_1..mem_K, t_0 .. t_{N-2}], output K-1+i predicts t_i.
Reconstruction is free-running greedy generation from the [mem] vectors alone, where one early
error can derail the rest; both accuracies are reported. The optimiser is the same as for
proto-tokens (same recipe, per-text early stop, best state); init randn * std(embeddings).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .metrics import c_tokens, h_lm
from .model import FrozenLM
from .optimize import Fit, optimize
from .recipe import Recipe, get_recipe


@dataclass(frozen=True)
class Cramming:
    """The input arrangement of cramming, in the optimiser's layout protocol."""

    mem: int = 1

    @property
    def name(self) -> str:
        return f"cramming-{self.mem}"

    @property
    def vectors(self) -> dict:
        return {"mem": (self.mem,)}

    @property
    def offset(self) -> int:
        return self.mem - 1

    def n_inputs(self, n: int) -> int:
        return self.mem + max(n - 1, 0)

    def inputs(self, vectors: dict, targets: list[list[int]], lm: FrozenLM) -> torch.Tensor:
        """[mem] then the embeddings of t_0 .. t_{N-2}, right-padded (causal: padding is never seen)."""
        width = max(len(t) for t in targets) - 1
        ids = torch.zeros(len(targets), width, dtype=torch.long)
        for k, t in enumerate(targets):
            ids[k, : len(t) - 1] = torch.tensor(t[:-1])
        mem = vectors["mem"]
        return torch.cat([mem, lm.embed(ids).to(mem.dtype)], dim=1)


def cram(lm: FrozenLM, targets: list[list[int]], *, mem: int = 1, recipe: "str | Recipe" = "fast",
         seed: int = 0, progress: bool = True) -> Fit:
    """Train [mem] vectors for each text (teacher forcing); init randn * std(embeddings)."""
    recipe = get_recipe(recipe).with_overrides(init="embedding-std")
    return optimize(lm, targets, layout=Cramming(mem), recipe=recipe, seed=seed, progress=progress)


@torch.inference_mode()
def text_ce_without_mem(lm: FrozenLM, ids: list[int]) -> tuple[float, float]:
    """(mean cross-entropy in nats, teacher-forced accuracy) of the plain LM on the text."""
    total = h_lm(lm, ids)
    x = torch.tensor([[lm.start_id, *ids]], device=lm.device)
    predicted = lm.logits(lm.embed(x))[0, :-1].argmax(-1).tolist()
    return total / len(ids), c_tokens(predicted, ids) / len(ids)


def evaluate(lm: FrozenLM, fit: Fit, targets: list[list[int]]) -> list[dict]:
    """Per text: teacher-forced and free-running accuracy, token gain and information gain."""
    rows = []
    for i, target in enumerate(targets):
        n = len(target)
        free = c_tokens(lm.greedy(fit.vectors["mem"][i], n), target) / n
        ce_without, acc_without = text_ce_without_mem(lm, target)
        rows.append({
            "teacher_forced_accuracy": fit.accuracy[i], "greedy_accuracy": free,
            "token_gain": (fit.accuracy[i] - acc_without) * n,
            "information_gain_nats": (ce_without - fit.loss[i]) * n,
        })
    return rows
