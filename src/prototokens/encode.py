"""Encoding: texts -> target ids -> optimised (e, m) -> ProtoTokens, in batches, resumable."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .errors import PrototokensError
from .layout import DEFAULT_LAYOUT, get_layout
from .model import FrozenLM
from .optimize import Fit, optimize
from .proto import ProtoTokens, TextRecord, text_sha256
from .recipe import DEFAULT_RECIPE, Recipe, get_recipe, same_recipe

if TYPE_CHECKING:
    from .encoder import Encoder

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
               hashes: list[str] | None = None, extra: dict | None = None, start: "Encoder | None" = None) -> ProtoTokens:
    """Find proto-tokens for each list of target ids.

    Texts are optimised ``batch_size`` at a time (all together when a vector is shared).
    With ``checkpoint``, the file is rewritten after every batch and a rerun with the same
    settings resumes after the texts it already holds. With ``start``, an encoder's output is
    the first seed's start (a shared vector starts at the mean of its rows); with a recipe of
    ``max_steps=0`` and ``restarts=1`` it is the result as it is.
    """
    recipe = get_recipe(recipe)
    hashes = hashes or [text_sha256(lm.detokenize(t)) for t in targets]
    proto = _empty(lm, layout, recipe, seed, restarts, shared, extra, start)
    if checkpoint is not None and Path(checkpoint).exists():
        proto = _resume(proto, ProtoTokens.load(checkpoint), hashes, checkpoint)
    step = len(targets) if shared else batch_size
    batches = range(len(proto.texts), len(targets), step)
    for n_batch, first in enumerate(batches):
        if progress and len(batches) > 1:
            log.warning("batch %d/%d: texts %d-%d", n_batch + 1, len(batches), first, min(first + step, len(targets)) - 1)
        batch = targets[first: first + step]
        fit = optimize(lm, batch, layout=layout, recipe=recipe, seed=seed, restarts=restarts, shared=shared,
                       trajectory=trajectory, progress=progress, start=_guess(lm, start, batch, layout, shared))
        proto = _append(proto, fit, batch, hashes[first: first + step])
        proto.complete = len(proto.texts) == len(targets)
        if checkpoint is not None:
            proto.save(checkpoint)
    proto.complete = True
    return proto


def _guess(lm: FrozenLM, encoder: "Encoder | None", targets: list[list[int]], layout: str, shared: str | None) -> dict | None:
    """The encoder's output for ``targets``, as the optimiser's start (None without an encoder)."""
    if encoder is None:
        return None
    if layout != encoder.meta["layout"]:
        raise PrototokensError(f"the encoder was trained for layout {encoder.meta['layout']}, not {layout}")
    guess = encoder.predict(lm, targets)
    return guess | ({shared: guess[shared].mean(0, keepdim=True)} if shared else {})


def _empty(lm: FrozenLM, layout: str, recipe: Recipe, seed: int, restarts: int, shared: str | None,
           extra: dict | None, start: "Encoder | None" = None) -> ProtoTokens:
    get_layout(layout)
    return ProtoTokens(
        e=torch.empty(0, lm.d_model), m=torch.empty(0, lm.d_model), layout=layout, shared=shared,
        model={"name": lm.name, "fingerprint": lm.fingerprint, "d_model": lm.d_model},
        recipe=recipe.to_dict() | {"seed": seed, "restarts": restarts} | ({"start": f"encoder {start.digest}"} if start else {}),
        texts=[], complete=False, extra=extra or {})


def parts_folder(output: "str | os.PathLike") -> Path:
    """Where the ranks of a torchrun job keep their finished texts until rank 0 merges them."""
    output = Path(output)
    return output.with_name(output.name + ".parts")


def encode_sharded(lm: FrozenLM, texts: list[str], output: "str | os.PathLike", *, layout: str = DEFAULT_LAYOUT,
                   recipe: "str | Recipe" = DEFAULT_RECIPE, seed: int = 0, restarts: int = 3, batch_size: int = 8,
                   trajectory: bool = False, progress: bool = True, extra: dict | None = None,
                   start: "Encoder | None" = None) -> ProtoTokens | None:
    """Encode ``texts`` into ``output`` with every rank of a torchrun job (or one process).

    The texts go in the batches one process makes (0..B-1, B..2B-1, ...; without the texts
    already done), dealt to the ranks in turn; after each batch, a rank writes it atomically
    to ``OUTPUT.parts/texts-I.proto.safetensors`` (I: its first text's index; the file lists
    the indices it holds). A rerun with any number of ranks first collects what
    ``output`` and every part already hold, so a killed job loses at most its batches in progress.
    When all ranks are done, rank 0 writes ``output`` with the texts in input order, the same file
    one process writes (the same batches, so the same rounding), removes the parts and returns it;
    the other ranks return None. One vector per text only: a shared vector ties the texts into one
    batch, which :func:`encode_ids` runs in one process. ``start`` as for :func:`encode_ids`.
    """
    from . import distributed

    recipe = get_recipe(recipe)
    output, parts = Path(output), parts_folder(output)
    targets = []
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text:
            raise PrototokensError(f"text {i} is empty" if text == "" else f"text {i} is not a string")
        targets.append(lm.tokenize(text))
    hashes = [text_sha256(t) for t in texts]
    fresh = _empty(lm, layout, recipe, seed, restarts, None, extra, start)
    done = _done(fresh, output, parts, hashes)
    distributed.barrier()  # every rank has read what is done before any writes more
    # the batches one process makes (texts 0..B-1, B..2B-1, ...), less what is done, dealt out in turn:
    # the same batches whatever the number of ranks, so the same float rounding, so the same file
    batches = [[i for i in range(first, min(first + batch_size, len(texts))) if i not in done]
               for first in range(0, len(texts), batch_size)]
    batches = [b for b in batches if b]
    if batches and distributed.is_main():
        log.warning("%s: %d of %d texts already done; %d rank(s) share the other %d in %d batches", output, len(done),
                    len(texts), distributed.world_size(), len(texts) - len(done), len(batches))
    mine = distributed.shard(batches)
    if mine:
        parts.mkdir(exist_ok=True)
    for n_batch, indices in enumerate(mine):
        if progress:
            log.warning("batch %d/%d: texts %s", n_batch + 1, len(mine), ", ".join(map(str, indices)))
        batch = [targets[i] for i in indices]
        fit = optimize(lm, batch, layout=layout, recipe=recipe, seed=seed, restarts=restarts, trajectory=trajectory,
                       progress=progress, start=_guess(lm, start, batch, layout, None))
        part = _append(_empty(lm, layout, recipe, seed, restarts, None, {"indices": indices}, start), fit, batch,
                       [hashes[i] for i in indices])
        if trajectory:
            part.extra["trajectory"] = part.trajectory
        part.save(parts / f"texts-{indices[0]:07d}.proto.safetensors")
    distributed.barrier()  # every rank has written its parts
    if not distributed.is_main():
        return None
    done = _done(fresh, output, parts, hashes)
    missing = [i for i in range(len(texts)) if i not in done]
    if missing:
        raise PrototokensError(f"texts {missing[:10]} were not encoded; rerun the same command to finish them")
    proto = _empty(lm, layout, recipe, seed, restarts, None, extra, start)
    rows = [done[i] for i in range(len(texts))]
    proto.e, proto.m = torch.stack([r[1] for r in rows]), torch.stack([r[2] for r in rows])
    proto.texts, proto.trajectory, proto.complete = [r[0] for r in rows], [r[3] for r in rows], True
    proto.save(output)
    if parts.is_dir():
        for f in parts.iterdir():
            f.unlink()
        parts.rmdir()
    return proto


def _done(fresh: ProtoTokens, output: Path, parts: Path, hashes: list[str]) -> dict[int, tuple]:
    """Text index -> (record, e, m, trajectory) of every text already encoded, in ``output`` (a
    prefix of the texts) or in any part; a file made with other texts or settings is refused."""
    done = {}
    if output.exists():
        old = _resume(fresh, ProtoTokens.load(output), hashes, output)
        done |= {i: (t, *old.vectors(i), []) for i, t in enumerate(old.texts)}
    for path in sorted(parts.glob("*.proto.safetensors")) if parts.is_dir() else []:
        part = ProtoTokens.load(path)
        indices = part.extra.get("indices", [])
        if len(indices) != len(part) or not all(isinstance(i, int) and 0 <= i < len(hashes) for i in indices):
            raise PrototokensError(f"{path} holds texts of another input (more texts than given); remove {parts} "
                                   "or choose another output file")
        _check_same(fresh, part, [hashes[i] for i in indices], path)
        trajectories = part.extra.get("trajectory") or [[] for _ in indices]
        done |= {i: (t, *part.vectors(j), trajectories[j]) for j, (i, t) in enumerate(zip(indices, part.texts))}
    return done


def _append(proto: ProtoTokens, fit: Fit, targets, hashes) -> ProtoTokens:
    records = [TextRecord.of(o, ids, h) for o, ids, h in zip(fit.outcomes, targets, hashes)]
    proto.e = fit.e if proto.shared == "e" else torch.cat([proto.e, fit.e])
    proto.m = fit.m if proto.shared == "m" else torch.cat([proto.m, fit.m])
    proto.texts += records
    proto.trajectory += fit.trajectory
    return proto


def _resume(fresh: ProtoTokens, old: ProtoTokens, hashes: list[str], path) -> ProtoTokens:
    """Continue from ``old`` if it was made by the same settings for a prefix of these texts."""
    _check_same(fresh, old, hashes, path)
    if old.texts:
        log.warning("resuming %s: %d of %d texts already done", path, len(old.texts), len(hashes))
    old.extra = fresh.extra | old.extra
    return old


def _check_same(fresh: ProtoTokens, old: ProtoTokens, hashes: list[str], path) -> None:
    """Refuse ``old`` unless made by the same model and settings for texts with these ``hashes`` (a prefix)."""
    same = (old.model["fingerprint"], old.layout, old.shared) == (
        fresh.model["fingerprint"], fresh.layout, fresh.shared) and same_recipe(old.recipe, fresh.recipe)
    prefix = [t.text_sha256 for t in old.texts] == hashes[: len(old.texts)]
    if not (same and prefix):
        raise PrototokensError(
            f"{path} exists and holds proto-tokens made with other texts, model or settings; "
            "remove it or choose another output file")
