"""Metrics, each defined once: token accuracy, C_tokens, H_LM."""

from __future__ import annotations

import math
import statistics

import torch
import torch.nn.functional as F

from .model import FrozenLM


def c_tokens(predicted: list[int], target: list[int]) -> int:
    """Number of positions whose prediction equals the target."""
    return sum(p == t for p, t in zip(predicted, target))


def token_accuracy(predicted: list[int], target: list[int]) -> float:
    """Share of the target's positions predicted right (a longer prediction's tail is not scored)."""
    return c_tokens(predicted, target) / len(target)


@torch.inference_mode()
def h_lm(lm: FrozenLM, ids: list[int]) -> float:
    """-sum_i log P(t_i | t_<i) in nats: the text's information for the model.

    The first token is scored after the model's document-start token (``FrozenLM.start_id``).
    """
    x = torch.tensor([[lm.start_id, *ids]], device=lm.device)
    logits = lm.logits(lm.embed(x))[0, :-1].float()
    return float(F.cross_entropy(logits, x[0, 1:], reduction="sum"))


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value), as tables report ``a ± b``."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def nats_to_bits(nats: float) -> float:
    return nats / math.log(2)
