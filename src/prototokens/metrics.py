"""Metrics, each defined once: token accuracy, C_tokens, H_LM, and how a reconstruction reads
beside its target (edit distance and chrF, from rapidfuzz and sacrebleu)."""

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


def wrong_positions(predicted: list[int], target: list[int]) -> list[int]:
    """The target's positions predicted wrong (or not at all)."""
    return [i for i, t in enumerate(target) if i >= len(predicted) or predicted[i] != t]


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


def quality(lm: FrozenLM, decoded: list[int], target: list[int]) -> dict:
    """What a reconstruction ``decoded`` reads like beside its ``target``, as a record holds it:
    both texts and their token pieces, the wrong positions, normalised character edit distance
    (0 same, 1 nothing alike), chrF (0-100) and the decoded text's own H_LM per token."""
    from rapidfuzz.distance import Levenshtein
    from sacrebleu.metrics import CHRF

    text, reference = lm.detokenize(decoded), lm.detokenize(target)
    return {"decoded_text": text, "target_text": reference, "decoded_pieces": lm.pieces(decoded),
            "target_pieces": lm.pieces(target), "wrong_positions": wrong_positions(decoded, target),
            "edit_distance": Levenshtein.normalized_distance(text, reference),
            "chrf": CHRF().sentence_score(text, [reference]).score,
            "decoded_h_lm_nats_per_token": h_lm(lm, decoded) / len(decoded)}
