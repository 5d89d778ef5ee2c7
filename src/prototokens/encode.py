"""Encoding: texts -> target ids -> optimised (e, m) -> ProtoTokens, in batches, resumable."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from .errors import PrototokensError
from .layout import DEFAULT_LAYOUT, get_layout
from .model import FrozenLM
from .optimize import Fit, optimize
from .proto import ProtoTokens, TextRecord, text_sha256
from .recipe import DEFAULT_RECIPE, Recipe, get_recipe, same_recipe

log = logging.getLogger(__name__)


def encode(lm: FrozenLM, texts: "str | list[str]", **options) -> ProtoTokens:
    """Find proto-tokens for each text. Options as for :func:`encode_ids`."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    targets = []
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text:
            raise PrototokensError(f"text {i} is empty" if text == "" else f"text {i} is not a string")
        targets.append(lm.tokenize(text))
    return encode_ids(lm, targets, hashes=[text_sha256(t) for t in texts], **options)


def encode_ids(lm: FrozenLM, targets: list[list[int]], *, layout: str = DEFAULT_LAYOUT,
               recipe: "str | Recipe" = DEFAULT_RECIPE, seed: int = 0, restarts: int = 3,
               shared: str | None = None, batch_size: int = 8, trajectory: bool = False,
               progress: bool = True, checkpoint: "str | os.PathLike | None" = None,
               hashes: list[str] | None = None, extra: dict | None = None) -> ProtoTokens:
    """Find proto-tokens for each list of target ids.

    Texts are optimised ``batch_size`` at a time (all together when a vector is shared).
    With ``checkpoint``, the file is rewritten after every batch and a rerun with the same
    settings resumes after the texts it already holds.
    """
    recipe = get_recipe(recipe)
    get_layout(layout)
    hashes = hashes or [text_sha256(lm.detokenize(t)) for t in targets]
    proto = ProtoTokens(
        e=torch.empty(0, lm.d_model), m=torch.empty(0, lm.d_model), layout=layout, shared=shared,
        model={"name": lm.name, "fingerprint": lm.fingerprint, "d_model": lm.d_model},
        recipe=recipe.to_dict() | {"seed": seed, "restarts": restarts}, texts=[], complete=False,
        extra=extra or {})
    if checkpoint is not None and Path(checkpoint).exists():
        proto = _resume(proto, ProtoTokens.load(checkpoint), hashes, checkpoint)
    step = len(targets) if shared else batch_size
    batches = range(len(proto.texts), len(targets), step)
    for n_batch, start in enumerate(batches):
        if progress and len(batches) > 1:
            log.warning("batch %d/%d: texts %d-%d", n_batch + 1, len(batches), start, min(start + step, len(targets)) - 1)
        fit = optimize(lm, targets[start: start + step], layout=layout, recipe=recipe, seed=seed,
                       restarts=restarts, shared=shared, trajectory=trajectory, progress=progress)
        proto = _append(proto, fit, targets[start: start + step], hashes[start: start + step])
        proto.complete = len(proto.texts) == len(targets)
        if checkpoint is not None:
            proto.save(checkpoint)
    proto.complete = True
    return proto


def _append(proto: ProtoTokens, fit: Fit, targets, hashes) -> ProtoTokens:
    records = [TextRecord.of(o, ids, h) for o, ids, h in zip(fit.outcomes, targets, hashes)]
    proto.e = fit.e if proto.shared == "e" else torch.cat([proto.e, fit.e])
    proto.m = fit.m if proto.shared == "m" else torch.cat([proto.m, fit.m])
    proto.texts += records
    proto.trajectory += fit.trajectory
    return proto


def _resume(fresh: ProtoTokens, old: ProtoTokens, hashes: list[str], path) -> ProtoTokens:
    """Continue from ``old`` if it was made by the same settings for a prefix of these texts."""
    same = (old.model["fingerprint"], old.layout, old.shared) == (
        fresh.model["fingerprint"], fresh.layout, fresh.shared) and same_recipe(old.recipe, fresh.recipe)
    prefix = [t.text_sha256 for t in old.texts] == hashes[: len(old.texts)]
    if not (same and prefix):
        raise PrototokensError(
            f"{path} exists and holds proto-tokens made with other texts, model or settings; "
            "remove it or choose another output file")
    if old.texts:
        log.warning("resuming %s: %d of %d texts already done", path, len(old.texts), len(hashes))
    old.extra = fresh.extra | old.extra
    return old
