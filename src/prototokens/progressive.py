"""Progressive growth (FusionBrainLab/progressive_cramming): fit a text's first ``first`` tokens,
then grow the target ``grow`` tokens at a time, each stage warm-started from the last, until a
stage fails. The optimiser runs on: one state per text (moments, and the recipe's schedule at the
text's own step count) carries across the stages, so a stage starts where the last one ended
rather than from a fresh warm-up. A stage fails when it is not exact within ``stage_steps``
updates, or when the text has spent the recipe's ``max_steps`` in all (at every length: a recipe's
``budget_tokens`` does not apply to a climb); the text's horizon is
then its longest exact prefix, and its kept states are that prefix's and the failed stage's best.
A stage is exact as :func:`~prototokens.optimize.optimize` has it, check dtypes and ``polish``
included: once a stage reads exactly in the compute dtype it also trains through the others.

Works for any arrangement: the cramming baseline (where teacher-forced exactness is greedy
exactness, so the horizon is the paper's "exact greedy tokens") and the proto-token layouts.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .errors import PrototokensError
from .layout import LAYOUTS, Arrangement, resolve_layout
from .model import FrozenLM
from .optimize import RECHECK, _polished, _read_everywhere, _solved, check_models, compute_model, evaluate, initial_vectors, polish_models
from .optimizers import build_optimizer
from .outcome import SOLVED, UNSOLVED, Outcome
from .proto import ProtoTokens, TextRecord, check_model, has_metadata, read_metadata, read_safetensors, save_atomic, text_sha256
from .recipe import Recipe, get_recipe, label
from .records import changed_settings

SAVE_SECONDS = 300.0  # a climb's state is kept at least this often within a stage (a stage can take hours)


@dataclass
class Stage:
    """A text's kept state at one length: its outcome and its vectors (one row each)."""

    length: int
    outcome: Outcome
    vectors: dict[str, torch.Tensor]


@dataclass
class Climb:
    """Where a text's progressive growth ended: the longest exact prefix (None if even the first
    stage failed) and the stage that failed (None if the whole text was reached)."""

    passed: Stage | None
    failed: Stage | None
    total_steps: int

    @property
    def horizon(self) -> int:
        return self.passed.length if self.passed else 0


def progressive(lm: FrozenLM, targets: list[list[int]], *, layout: "str | Arrangement", recipe: "str | Recipe",
                seed: int = 0, first: int = 1, grow: int = 1, stage_steps: int = 1000, state: "str | os.PathLike | None" = None,
                names: list[str] | None = None, progress: bool = True) -> list[Climb]:
    """Grow each text's target from ``first`` tokens by ``grow`` until a stage fails (texts in
    one batch, each at its own length; a text's run does not depend on its batch).

    ``state`` names a file that keeps the climb whenever a stage ends, and every
    :data:`SAVE_SECONDS` within one (vectors, optimiser state, kept stages): a climb interrupted
    resumes from it and ends as it would have without the interruption. The caller removes it
    once the climbs are recorded. ``names`` (the texts' names) are kept in it too, so that
    :func:`standing` can say whose climb it is."""
    layout, recipe = resolve_layout(layout), get_recipe(recipe)
    if min(first, grow, stage_steps) < 1:
        raise PrototokensError("first, grow and stage_steps must be at least 1")
    if not targets or not all(targets):
        raise PrototokensError("nothing to encode: every text needs at least one token")
    n = len(targets)
    params = initial_vectors(lm, recipe, seed, layout.vectors, {name: n for name in layout.vectors})
    optimizer = build_optimizer(list(params.values()), recipe, lm)
    compute = compute_model(lm, recipe)
    checks = check_models(lm, recipe)
    polish = polish_models(recipe, compute, checks)
    # as it reads back from a file; a climb of a polishing recipe kept before stages polished is refused
    stamp = json.loads(json.dumps({"model": {"name": lm.name, "fingerprint": lm.fingerprint}, "layout": layout.name,
                                   "recipe": recipe.to_dict(), "seed": seed, "first": first, "grow": grow,
                                   "stage_steps": stage_steps, "targets": targets}
                                  | ({"polished_stages": True} if recipe.polish else {})))
    climbing = _Climbing.load(state, stamp, params, optimizer) if state and Path(state).exists() else _Climbing.start(targets, first)
    length, since, used, next_check, polishing = (climbing.length, climbing.since, climbing.used, climbing.next_check,
                                                  climbing.polishing)
    passed, current, failed = climbing.passed, climbing.current, climbing.failed
    started = saved = time.perf_counter()
    bar = tqdm(total=sum(len(t) for t in targets), initial=sum(s.length for s in passed if s), disable=not progress,
               desc="progressive", unit="tok", leave=False)
    while climbing.active:
        active = climbing.active
        idx = torch.tensor(active, device=lm.device)
        vectors = {name: p[idx] for name, p in params.items()}
        texts = [targets[a][: length[a]] for a in active]
        scores = evaluate(compute, layout, vectors, texts, *recipe.objective)
        objective, seen = _polished(scores.objective, polish, {a for a in active if polishing[a]}, [[a] for a in active],
                                    active, layout, vectors, texts, recipe)
        loss, acc, margin = scores.loss.tolist(), scores.accuracy.tolist(), scores.margin.tolist()
        step_rows, still = [], []
        for k, a in enumerate(active):
            exact = _solved(acc[k], margin[k], recipe) and math.isfinite(loss[k])
            polishing[a] = polishing[a] or acc[k] == 1.0
            if exact and checks:  # read in every check dtype as optimize reads it
                read, found = _read_everywhere(checks, layout, vectors, [k], [texts[k]], recipe, seen,
                                               due=used[a] >= next_check[a])
                if read:
                    next_check[a] = used[a] + RECHECK
                exact = found is not None
            outcome = Outcome(acc[k], loss[k], margin[k], since[a], used[a], seed, SOLVED if exact else UNSOLVED,
                              time.perf_counter() - started, compute.dtype_name)
            if exact:
                bar.update(length[a] - (passed[a].length if passed[a] else 0))
                passed[a], current[a] = _kept(length[a], outcome, vectors, k), None
                if length[a] == len(targets[a]):
                    continue  # the whole text is reached
                length[a], since[a], next_check[a], polishing[a] = min(length[a] + grow, len(targets[a])), 0, used[a], False
                still.append(a)  # scored at its new length before its next update
                continue
            best = current[a]
            if best is None or (acc[k], -loss[k]) > (best.outcome.accuracy, -best.outcome.loss):
                current[a] = _kept(length[a], outcome, vectors, k)
            if since[a] >= stage_steps or used[a] >= recipe.max_steps or not math.isfinite(loss[k]):
                failed[a] = current[a]
                continue
            step_rows.append(k)
            still.append(a)
        if step_rows:
            objective[step_rows].sum().backward()
            optimizer.step([idx[step_rows] for _ in params])
            for k in step_rows:
                since[active[k]] += 1
                used[active[k]] += 1
        ended = any(since[a] == 0 for a in still) or len(still) < len(active)
        climbing.active = still
        if state and (ended or time.perf_counter() - saved >= SAVE_SECONDS):
            climbing.save(state, stamp, params, optimizer, names)
            saved = time.perf_counter()
        bar.set_postfix(longest=max((s.length for s in passed if s), default=0), active=len(still), refresh=False)
    bar.close()
    return [Climb(p, f, u) for p, f, u in zip(passed, failed, used)]


def _kept(length: int, outcome: Outcome, vectors: dict[str, torch.Tensor], k: int) -> Stage:
    """Row ``k`` of ``vectors`` as a kept state, its vectors copied (only for a state that is kept)."""
    return Stage(length, outcome, {name: v[k].detach().cpu().clone() for name, v in vectors.items()})


@dataclass
class _Climbing:
    """Where each text of a climb stands: its stage's length, the updates in its stage and in all,
    when it is next checked in the other dtypes, whether it trains through them (its stage has
    read exactly in the compute dtype), its kept stages, and the texts still climbing."""

    length: list[int]
    since: list[int]
    used: list[int]
    next_check: list[int]
    polishing: list[bool]
    passed: list[Stage | None]
    current: list[Stage | None]  # the best state of the stage under way
    failed: list[Stage | None]
    active: list[int]

    @classmethod
    def start(cls, targets: list[list[int]], first: int) -> "_Climbing":
        n = len(targets)
        return cls([min(first, len(t)) for t in targets], [0] * n, [0] * n, [0] * n, [False] * n, [None] * n, [None] * n,
                   [None] * n, list(range(n)))

    def save(self, path, stamp: dict, params: dict[str, torch.Tensor], optimizer, names: list[str] | None) -> None:
        tensors = {f"param.{name}": p.detach().cpu() for name, p in params.items()}
        tensors |= {f"optimizer.{key}": x.detach().cpu() for key, x in optimizer.state_dict().items()}
        kept = {}
        for kind in _KEPT:
            kept[kind] = [None if s is None else {"length": s.length, "outcome": s.outcome.to_dict()} for s in getattr(self, kind)]
            tensors |= {f"{kind}.{a}.{name}": v.clone() for a, s in enumerate(getattr(self, kind)) if s  # failed may be current
                        for name, v in s.vectors.items()}
        meta = {"stamp": stamp, "length": self.length, "since": self.since, "used": self.used,
                "next_check": self.next_check, "polishing": self.polishing, "active": self.active, "names": names} | kept
        save_atomic(path, {k: v.contiguous() for k, v in tensors.items()}, _FORMAT, meta)

    @classmethod
    def load(cls, path, stamp: dict, params: dict[str, torch.Tensor], optimizer) -> "_Climbing":
        """The climb kept in ``path``, its vectors and optimiser state put back into ``params`` and
        ``optimizer``; refused if it is another climb's."""
        tensors, raw = read_safetensors(path, _FORMAT, "a progressive climb's state")
        meta = json.loads(raw)
        if changed_settings(meta["stamp"], stamp):
            raise PrototokensError(f"{path} holds the climb of other texts, settings or model; remove it to start over")
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(tensors[f"param.{name}"])
        optimizer.load_state_dict({k.removeprefix("optimizer."): v.to(next(iter(params.values())).device)
                                   for k, v in tensors.items() if k.startswith("optimizer.")})
        kept = {kind: [None if s is None else
                       Stage(s["length"], Outcome(**s["outcome"]),
                             {name: tensors[f"{kind}.{a}.{name}"] for name in params})
                       for a, s in enumerate(meta[kind])] for kind in _KEPT}
        polishing = meta.get("polishing", [False] * len(meta["length"]))  # kept before stages polished
        return cls(meta["length"], meta["since"], meta["used"], meta["next_check"], polishing, active=meta["active"], **kept)


_FORMAT = "prototokens.climb"
_KEPT = ("passed", "current", "failed")


def is_state(path: "str | os.PathLike") -> bool:
    """Whether ``path`` is a progressive climb's state (a safetensors file with its metadata)."""
    return has_metadata(path, _FORMAT)


def summary(path: "str | os.PathLike") -> dict:
    """What ``prototokens info`` prints of a climb's state: the model, layout, recipe and growth it
    was kept for, and where each text stands (:func:`standing`)."""
    meta = _state_meta(path)
    stamp = meta["stamp"]
    return {"model": stamp["model"], "layout": stamp["layout"], "recipe": label(stamp["recipe"]), "seed": stamp["seed"],
            "first": stamp["first"], "grow": stamp["grow"], "stage_steps": stamp["stage_steps"], "texts": _standing(meta)}


def standing(path: "str | os.PathLike") -> list[dict]:
    """Where each text of the climb kept in ``path`` stands, read from the file's metadata alone:
    its name (None in a file kept before names were), its longest exact prefix so far, the length
    of its stage under way (None once its climb has ended), and its updates spent of the most."""
    return _standing(_state_meta(path))


def passed_prefixes(path: "str | os.PathLike", lm: FrozenLM) -> ProtoTokens:
    """The longest exact prefix each text of the one-step climb kept in ``path`` has passed so far,
    as proto-tokens to decode and verify (texts with no stage passed yet left out; the climb's names
    of those kept in ``extra``); refused for another model's climb, a cramming one, or one with no
    stage passed yet."""
    tensors, raw = read_safetensors(path, _FORMAT, "a progressive climb's state")
    meta = json.loads(raw)
    stamp = meta["stamp"]
    check_model(stamp["model"], lm, f"the climb in {path}")
    if stamp["layout"] not in LAYOUTS:
        raise PrototokensError(f"{path} is a {stamp['layout']} climb: its vectors are not proto-tokens")
    kept = [(a, s) for a, s in enumerate(meta["passed"]) if s]
    if not kept:
        raise PrototokensError(f"no text of the climb in {path} has passed a stage yet")
    names = meta.get("names") or [None] * len(meta["passed"])
    targets = [stamp["targets"][a][: s["length"]] for a, s in kept]
    e, m = (torch.stack([tensors[f"passed.{a}.{name}"] for a, _ in kept]) for name in ("e", "m"))
    return ProtoTokens(
        e=e, m=m, layout=stamp["layout"], shared=None, model=stamp["model"] | {"d_model": lm.d_model}, recipe=stamp["recipe"],
        texts=[TextRecord.of(Outcome(**s["outcome"]), t, text_sha256(lm.detokenize(t))) for (_, s), t in zip(kept, targets)],
        extra={"climb": str(path), "names": [names[a] for a, _ in kept]})


def _state_meta(path: "str | os.PathLike") -> dict:
    return json.loads(read_metadata(path, _FORMAT, "a progressive climb's state"))


def _standing(meta: dict) -> list[dict]:
    names = meta.get("names") or [None] * len(meta["length"])
    return [{"name": name, "passed": passed["length"] if passed else 0,
             "stage": length if a in meta["active"] else None, "used": used, "max_steps": meta["stamp"]["recipe"]["max_steps"]}
            for a, (name, passed, length, used) in enumerate(zip(names, meta["passed"], meta["length"], meta["used"]))]
