"""The autoregressive baseline of Kuratov et al. (arXiv 2502.13063): "cramming" a text into
K trainable [mem] vectors prepended to its own token embeddings.

Training is teacher-forced: inputs [start, mem_1..mem_K, t_0 .. t_{N-2}], output K+i predicts
t_i. ``start`` is the frozen embedding of the model's document-start token (what a tokenizer's
BOS puts there): SmolLM2 can hardly steer output 0 at all (bench/position0.py), so without it
the first token is lost at every length. Reconstruction is free-running greedy generation from
[start, mem] alone, where one early error can derail the rest; both accuracies are reported.
The optimiser is the same as for proto-tokens (same recipe, per-text early stop, best state);
init randn * std(embeddings).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .metrics import h_lm, token_accuracy
from .model import FrozenLM
from .optimize import Fit
from .recipe import Recipe, get_recipe


@dataclass(frozen=True)
class Cramming:
    """The input arrangement of cramming: a :class:`~prototokens.layout.Arrangement`."""

    mem: int = 1

    @property
    def name(self) -> str:
        return f"cramming-{self.mem}"

    @property
    def vectors(self) -> dict:
        return {"mem": (self.mem,)}

    def outputs(self, n: int) -> slice:
        """Output K + i (after [start] and K [mem]) predicts t_i."""
        return slice(self.mem, self.mem + n)

    def n_inputs(self, n: int) -> int:
        return 1 + self.mem + max(n - 1, 0)

    def inputs(self, vectors: dict, targets: list[list[int]], lm: FrozenLM) -> torch.Tensor:
        """[start][mem] then the embeddings of t_0 .. t_{N-2}, right-padded (causal: padding is never seen)."""
        width = max(len(t) for t in targets) - 1
        ids = torch.full((len(targets), width + 1), lm.start_id, dtype=torch.long)
        for k, t in enumerate(targets):
            ids[k, 1: len(t)] = torch.tensor(t[:-1])
        mem = vectors["mem"]
        embedded = lm.embed(ids).to(mem.dtype)
        return torch.cat([embedded[:, :1], mem, embedded[:, 1:]], dim=1)

    def recipe(self, recipe: "str | Recipe | None") -> Recipe:
        """Kuratov et al.'s ``cramming`` unless another is given, from their init randn *
        std(embeddings) unless the recipe starts as progressive cramming does (uniform-0.02)."""
        recipe = get_recipe(recipe or "cramming")
        return recipe if recipe.init == "uniform-0.02" else recipe.with_overrides(init="embedding-std")

    def describe(self) -> dict:
        return {"study": "cramming", "mem": self.mem, "inputs": "[start][mem]xK, then the text"}

    def reconstruction(self, lm: FrozenLM, fit: Fit, targets: list[list[int]]) -> list[dict]:
        """Free-running greedy generation from [start][mem]: its accuracy is the one that counts;
        the teacher-forced accuracy, token gain and information gain go beside it."""
        return [row | {"accuracy": row["greedy_accuracy"]} for row in evaluate(lm, fit, targets)]

    def prompt(self, lm: FrozenLM, mem: torch.Tensor) -> torch.Tensor:
        """(1 + K, d): what greedy reconstruction starts from, [start][mem]."""
        return torch.cat([lm.start_embedding()[None].to(mem.device, mem.dtype), mem])


@torch.inference_mode()
def text_ce_without_mem(lm: FrozenLM, ids: list[int]) -> tuple[float, float]:
    """(mean cross-entropy in nats, teacher-forced accuracy) of the plain LM on the text."""
    total = h_lm(lm, ids)
    x = torch.tensor([[lm.start_id, *ids]], device=lm.device)
    predicted = lm.logits(lm.embed(x))[0, :-1].argmax(-1).tolist()
    return total / len(ids), token_accuracy(predicted, ids)


def evaluate(lm: FrozenLM, fit: Fit, targets: list[list[int]]) -> list[dict]:
    """Per text: the ids free-running greedy generation writes, teacher-forced and free-running
    accuracy, token gain and information gain."""
    rows, layout = [], Cramming(fit.vectors["mem"].shape[1])
    for i, (target, outcome) in enumerate(zip(targets, fit.outcomes)):
        n = len(target)
        free = lm.greedy(layout.prompt(lm, fit.vectors["mem"][i]), n)
        ce_without, acc_without = text_ce_without_mem(lm, target)
        rows.append({
            "decoded_ids": free, "teacher_forced_accuracy": outcome.accuracy, "greedy_accuracy": token_accuracy(free, target),
            "token_gain": (outcome.accuracy - acc_without) * n,
            "information_gain_nats": (ce_without - outcome.loss) * n,
        })
    return rows
