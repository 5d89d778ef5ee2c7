"""The batched optimiser: find the trainable vectors of a layout for B texts at once.

For the proto-token layouts the vectors are e and m: each text has its own e; m is per text
or shared by the batch (or e is shared, for the sharing study). The cramming baseline trains K
[mem] vectors per text the same way. A *group* is the set of texts tied by a shared vector (one
text when nothing is shared): a group stops when all its texts are reconstructed, and its best
state (highest accuracy, then lowest loss) is what is kept. Stopped groups leave the forward
pass, so they cost nothing. Each text's loss is its mean cross-entropy and the batch loss is
their sum, so a text's gradient does not depend on what else is in the batch: batched equals
one at a time. A group that fails is restarted from the next seed, up to ``restarts`` times.
With ``Recipe.starts`` above 1, each seed races that many starts of every text side by side
(one batch row each) and keeps only the most advanced after ``race_steps``.

The loop here keeps only the bookkeeping (active rows, groups, best state); the update is the
optimiser the recipe names (optimizers.py), and which output predicts which target is the
layout's to say (``layout.outputs``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .errors import PrototokensError
from .layout import DEFAULT_LAYOUT, Arrangement, resolve_layout
from .model import FrozenLM
from .optimizers import build_optimizer
from .outcome import FAILED, SOLVED, UNSOLVED, Outcome
from .recipe import DEFAULT_RECIPE, Recipe, get_recipe

IGNORE = -100
RECHECK = 10  # steps between two checks of a group that is exact in the compute dtype but not in another


class Step(NamedTuple):
    """One step of one start of a text, as :func:`optimize` traces it."""

    seed: int
    start: int  # which of the seed's raced starts (0 unless Recipe.starts > 1)
    step: int
    loss: float
    accuracy: float


@dataclass
class Fit:
    """Result of :func:`optimize`: per vector name, one row per text (or one row if shared),
    and one :class:`~prototokens.outcome.Outcome` per text."""

    vectors: dict[str, torch.Tensor]
    outcomes: list[Outcome]
    seconds: float
    # per text, every step of every start it ran (when asked for)
    trajectory: list[list[Step]] = field(default_factory=list)

    @property
    def e(self) -> torch.Tensor:
        return self.vectors["e"]

    @property
    def m(self) -> torch.Tensor:
        return self.vectors["m"]


@dataclass
class Scores:
    """What one forward pass says of each text of a batch (tensors of shape (B,))."""

    objective: torch.Tensor  # mean cross-entropy, the first target weighted by the recipe; has grad
    loss: torch.Tensor  # plain mean cross-entropy (nats)
    accuracy: torch.Tensor  # share of targets whose logit leads
    margin: torch.Tensor  # smallest lead of a target logit over the runner-up


def optimize(lm: FrozenLM, targets: list[list[int]], *, layout: "str | Arrangement" = DEFAULT_LAYOUT, recipe: "str | Recipe" = DEFAULT_RECIPE,
             seed: int = 0, restarts: int = 1, shared: str | None = None, trajectory: bool = False,
             start: dict[str, torch.Tensor] | None = None, progress: bool = True) -> Fit:
    """Fit the layout's vectors so that its forward pass predicts every list of target ids.

    ``layout`` is a layout name or any :class:`~prototokens.layout.Arrangement` (a
    :class:`~prototokens.layout.Layout`, :class:`~prototokens.cramming.Cramming`); ``shared``
    names a vector shared by all texts.
    ``start`` (vector name -> rows, e.g. a shorter prefix's ``Fit.vectors``) replaces the first
    seed's initialisation; further restarts start from the recipe's init.
    Each text runs the recipe at its length (:meth:`~prototokens.recipe.Recipe.at_length`; a
    shared vector's texts at the longest), so texts whose budgets differ run as separate batches.
    """
    layout, recipe = resolve_layout(layout), get_recipe(recipe)
    _check(lm, targets, layout, shared, restarts)
    best = _Best(lm, len(targets), layout.vectors, shared, trajectory, lm.in_dtype(recipe.dtype).dtype_name)
    todo = list(range(len(targets)))
    for round_ in range(restarts):
        if not todo:
            break
        for budget, rows in _by_budget(recipe, targets, todo, shared).items():
            begin = {n: v[rows if v.shape[0] > 1 else [0]] for n, v in start.items()} if start and not round_ else None
            _run(lm, targets, rows, layout, budget, seed + round_, shared, best, progress, begin)
        todo = [] if shared and best.all_solved() else [i for i in todo if best.outcomes[i].status == UNSOLVED]
    return best.fit()


def _by_budget(recipe: Recipe, targets: list[list[int]], todo: list[int], shared: str | None) -> dict[Recipe, list[int]]:
    """The texts ``todo`` by the recipe each runs at its length (all at the longest when shared)."""
    if shared:
        return {recipe.at_length(max(len(targets[i]) for i in todo)): todo}
    groups: dict[Recipe, list[int]] = {}
    for i in todo:
        groups.setdefault(recipe.at_length(len(targets[i])), []).append(i)
    return groups


def _check(lm, targets, layout, shared, restarts):
    if shared is not None and shared not in layout.vectors:
        raise PrototokensError(f"shared must name a vector of layout {layout.name} ({', '.join(layout.vectors)}), got {shared!r}")
    if restarts < 1:
        raise PrototokensError("restarts must be at least 1")
    if not targets:
        raise PrototokensError("nothing to encode: no texts given")
    for i, ids in enumerate(targets):
        if not ids:
            raise PrototokensError(f"text {i} is empty: it has no tokens to encode")
        if layout.n_inputs(len(ids)) > lm.max_length:
            raise PrototokensError(
                f"text {i} has {len(ids)} tokens; with layout {layout.name} the model "
                f"{lm.name} takes at most {lm.max_length - layout.n_inputs(0)}")


class _Best:
    """Per-text best state over all seeds."""

    def __init__(self, lm, n, shapes, shared, trajectory, dtype):
        self.shared, self.dtype = shared, dtype
        self.vectors = {name: torch.zeros(1 if shared == name else n, *shape, lm.d_model)
                        for name, shape in shapes.items()}
        self.outcomes = [Outcome.unsolved() for _ in range(n)]
        self.started = time.perf_counter()
        self.trajectory = [[] for _ in range(n)] if trajectory else []

    def all_solved(self):
        return all(o.solved for o in self.outcomes)

    def offer(self, rows, vectors, loss, acc, margin, steps, seed, solved, start=0):
        """Keep the state of ``rows`` (one group) if it beats the best so far: a solved state
        beats any unsolved one (an exact state whose dtype check was not yet due may have the
        lower loss), then higher accuracy, then lower loss."""
        old = [self.outcomes[r] for r in rows]
        kept = (all(o.solved for o in old), sum(o.accuracy for o in old), -sum(o.loss for o in old))
        if (solved, sum(acc), -sum(loss)) <= kept:
            return
        elapsed = time.perf_counter() - self.started
        for k, r in enumerate(rows):
            self.outcomes[r] = Outcome(acc[k], loss[k], margin[k], steps, self.outcomes[r].total_steps, seed,
                                       SOLVED if solved else UNSOLVED, elapsed, self.dtype, start)
        for name, new in vectors.items():
            if self.shared == name:
                self.vectors[name][0] = new[0].detach().cpu()
            else:
                self.vectors[name][rows] = new.detach().cpu()

    def fit(self):
        return Fit(self.vectors, self.outcomes, time.perf_counter() - self.started, self.trajectory)


def initial_vectors(lm: FrozenLM, recipe: Recipe, seed: int, shapes: dict, rows: dict, starts: int = 1) -> dict[str, torch.Tensor]:
    """The same start for every text of a seed, so a text's run does not depend on its batch:
    ``rows[name]`` rows per vector, or with ``starts`` above 1 that many rows per text, its
    starts in turn (start j is the seed's (j + 1)-th draw, so start 0 is the seed's start)."""
    g = torch.Generator().manual_seed(seed)
    drawn = []
    for _ in range(starts):
        if recipe.init == "uniform-0.02":
            start = {name: torch.rand(*shape, lm.d_model, generator=g) * 0.02 for name, shape in shapes.items()}
        else:
            scale = 1.0 if recipe.init == "normal" else lm.embedding_std
            start = {name: torch.randn(*shape, lm.d_model, generator=g) * scale for name, shape in shapes.items()}
        if recipe.init == "start" and "e" in start:
            start["e"] = lm.start_embedding()
        drawn.append(start)
    return {name: torch.stack([d[name] for d in drawn]).repeat(rows[name], *[1] * (len(shape) + 1)).to(lm.device).requires_grad_()
            for name, shape in shapes.items()}


def _run(lm, targets, rows, layout, recipe, seed, shared, best, progress, begin=None):
    """One seed on ``rows``: the recipe's optimiser on their vectors (from ``begin`` if given)
    until each group stops. With ``recipe.starts`` above 1 (and nothing shared or begun from),
    each text runs that many starts, one batch row each, until ``recipe.race_steps``, when all
    but its most advanced stop; a text's solve stops all its starts."""
    starts = 1 if shared or begin is not None else recipe.starts
    text_of = [r for r in rows for _ in range(starts)]  # per batch row, its text and its start
    start_of = [j for _ in rows for j in range(starts)]
    # the trainable vectors: one row per start of a text, or one row for a shared vector
    if begin is None:
        params = initial_vectors(lm, recipe, seed, layout.vectors, {n: 1 if n == shared else len(rows) for n in layout.vectors}, starts)
    else:
        params = {n: v.detach().float().clone().to(lm.device).requires_grad_() for n, v in begin.items()}
    optimizer = build_optimizer(list(params.values()), recipe, lm)
    average = {n: p.detach().clone() for n, p in params.items()} if recipe.average else {}
    compute = compute_model(lm, recipe)
    checks = check_models(lm, recipe)
    polish = polish_models(recipe, compute, checks)
    polishing = set()  # groups (by first member) exact in the compute dtype at least once
    next_check = {}  # group -> first step at which its decode is checked again after a miss
    active = list(range(len(text_of)))  # batch rows
    groups = [active] if shared else [[a] for a in active]
    record = {g[0]: ((-1.0, -math.inf), 0) for g in groups}  # group -> (best progress this seed, step it was reached)
    bar = tqdm(total=recipe.max_steps, disable=not progress, leave=False, dynamic_ncols=True,
               desc=f"seed {seed}" if progress else None)

    def offer(group, ks, vectors, loss, acc, margin, solved):
        """Offer the state of ``group`` (its rows ``ks`` of ``vectors`` and of each score) to
        ``best``, and note its progress for ``patience``."""
        best.offer([text_of[a] for a in group], {n: v[ks] for n, v in vectors.items()},
                   *([s[k] for k in ks] for s in (loss, acc, margin)), step, seed, solved, start_of[group[0]])
        now = _progress([acc[k] for k in ks], [margin[k] for k in ks], recipe)
        if now > record[group[0]][0]:
            record[group[0]] = now, step

    for step in range(recipe.max_steps + 1):
        # forward: the active texts only
        idx = torch.tensor(active, device=lm.device)
        vectors = {name: p[_param_rows(idx, p)] for name, p in params.items()}
        texts = [targets[text_of[a]] for a in active]
        scores = evaluate(compute, layout, vectors, texts, *recipe.objective)
        objective, seen = _polished(scores.objective, polish, polishing, groups, active, layout, vectors, texts, recipe)
        finite = torch.isfinite(objective.detach())
        loss, acc, margin = scores.loss.tolist(), scores.accuracy.tolist(), scores.margin.tolist()
        for k, a in enumerate(active):
            best.outcomes[text_of[a]].total_steps += 1 if step else 0
            if best.trajectory:
                best.trajectory[text_of[a]].append(Step(seed, start_of[a], step, loss[k], acc[k]))
        # bookkeeping per group: keep its best state; stop it when solved, stalled or failed
        stopped, done = set(), set()  # batch rows that stop here; texts solved here
        for group in (g for g in groups if g[0] in active):
            ks = [active.index(a) for a in group]
            if not all(finite[k] for k in ks):
                stopped.update(group)
                if not any(text_of[b] == text_of[group[0]] and b not in stopped for b in active):
                    for a in group:  # its last start: the text failed
                        best.outcomes[text_of[a]].status = FAILED
                continue
            if all(acc[k] == 1.0 for k in ks):
                polishing.add(group[0])
            solved = all(_solved(acc[k], margin[k], recipe) for k in ks)
            if solved and checks:  # exact in the compute dtype; is it in every dtype it must decode in?
                read, found = _read_everywhere(checks, layout, vectors, ks, [targets[text_of[a]] for a in group], recipe, seen,
                                               due=step >= next_check.get(group[0], 0))
                if read:
                    next_check[group[0]] = step + RECHECK
                solved = found is not None
                for k, g in zip(ks, found or []):
                    margin[k] = min(margin[k], g)
            offer(group, ks, vectors, loss, acc, margin, solved)
            stalled = recipe.patience is not None and step - record[group[0]][1] >= recipe.patience
            stalled |= recipe.pace is not None and step == recipe.pace[0] and record[group[0]][0][0] < recipe.pace[1] * len(group)
            if solved:
                done.update(text_of[a] for a in group)
            if solved or stalled:
                stopped.update(group)
        if average and step % RECHECK == 0 and step:  # the running average, read like the iterate
            mean = {name: v[_param_rows(idx, v)] for name, v in average.items()}
            with torch.no_grad():
                read = evaluate(compute, layout, mean, texts)
            m_loss, m_acc, m_margin = read.loss.tolist(), read.accuracy.tolist(), read.margin.tolist()
            for group in (g for g in groups if g[0] in active and not stopped.intersection(g)):
                ks = [active.index(a) for a in group]
                solved = all(_solved(m_acc[k], m_margin[k], recipe) for k in ks)
                if solved and checks:
                    found = _margins_everywhere(checks, layout, {n: v[ks] for n, v in mean.items()}, [targets[text_of[a]] for a in group], recipe)
                    solved = found is not None
                    for k, g in zip(ks, found or []):
                        m_margin[k] = min(m_margin[k], g)
                offer(group, ks, mean, m_loss, m_acc, m_margin, solved)
                if solved:
                    done.update(text_of[a] for a in group)
                    stopped.update(group)
        stopped.update(a for a in active if text_of[a] in done)  # a solved text's other starts
        if starts > 1 and step == recipe.race_steps:
            stopped.update(_race_losers(active, stopped, text_of, record, loss))
        if progress:
            bar.set_postfix(loss=f"{float(scores.loss[finite].mean()) if finite.any() else math.nan:.3f}",
                            acc=f"{float(scores.accuracy.mean()):.3f}", active=len(active) - len(stopped), refresh=False)
        if step == recipe.max_steps or len(stopped) == len(active):
            break
        # backward and update, for the texts still going
        keep = [k for k, a in enumerate(active) if a not in stopped]
        objective[keep].sum().backward()
        updated = [_param_rows(idx[keep], p).unique() for p in params.values()]
        optimizer.step(updated)
        with torch.no_grad():
            for (name, p), at in zip(params.items(), updated if average else []):
                average[name][at] = average[name][at].lerp(p[at], 1 - recipe.average)
        active = [active[k] for k in keep]
        bar.update()
    bar.close()


def _race_losers(active: list[int], stopped: set[int], text_of: list[int], record: dict, loss: list[float]) -> list[int]:
    """The batch rows that lose the race: of each text's starts still going, all but the most
    advanced (best progress this seed, then lowest loss now, then the earliest start)."""
    going: dict[int, list[tuple]] = {}
    for k, a in enumerate(active):
        if a not in stopped:
            going.setdefault(text_of[a], []).append((record[a][0], -loss[k], -a, a))
    return [a for rivals in going.values() for *_, a in sorted(rivals)[:-1]]


def compute_model(lm: FrozenLM, recipe: Recipe) -> FrozenLM:
    """The model a recipe's steps run through: its dtype's step twin (``FrozenLM.for_steps``)."""
    return lm.in_dtype(recipe.dtype).for_steps()


def check_models(lm: FrozenLM, recipe: Recipe) -> list[FrozenLM]:
    """The models a text exact in the compute pass must also be exact in: one per check dtype,
    less the compute dtype where its batched pass already reads each text as it would alone, plus
    the compute dtype's own model where the steps run through a twin (a file is read by that)."""
    eager = lm.in_dtype(recipe.dtype)
    compute = eager.for_steps()
    dtypes = list(recipe.check_dtypes)
    if compute is not eager and eager.dtype_name not in dtypes:
        dtypes.append(eager.dtype_name)
    return [c for c in (lm.in_dtype(d) for d in dtypes) if c is not compute or not c.batch_invariant]


def polish_models(recipe: Recipe, compute: FrozenLM, checks: list[FrozenLM]) -> list[FrozenLM]:
    """What a text exact in the compute dtype also trains through (``recipe.polish``): the other
    check dtypes whose pass is :attr:`~prototokens.model.FrozenLM.cheap` (where PyTorch emulates
    bf16 a step costs several fp32 ones)."""
    return [c for c in checks if c.dtype != compute.dtype and c.cheap] if recipe.polish else []


def _polished(objective, polish, polishing, groups, active, layout, vectors, targets, recipe) -> tuple[torch.Tensor, dict]:
    """``objective`` plus, for the texts of the groups in ``polishing``, the objective of one
    pass through each model in ``polish``; and what those passes read, per model and text
    (position in ``active``): (accuracy, margin), this step's check in that dtype for free where
    a batch reads each text as it would alone."""
    ks = [k for g in groups if g[0] in polishing for k, a in enumerate(active) if a in g]
    if not (polish and ks):
        return objective, {}
    at = torch.tensor(ks, device=objective.device)
    mine = {n: v[at] for n, v in vectors.items()}
    seen = {}
    for lm in polish:
        extra = evaluate(lm, layout, mine, [targets[k] for k in ks], *recipe.objective)
        reads = list(zip(extra.accuracy.tolist(), extra.margin.tolist()))
        # lazy: only the rows this pass still misreads (or reads short of the margin); none, no backward through it
        train = [i for i, read in enumerate(reads) if not (recipe.lazy_polish and _solved(*read, recipe))]
        if train:
            objective = objective.index_add(0, at[train], extra.objective[train])
        if lm.batch_invariant:
            seen[lm] = dict(zip(ks, reads))
    return objective, seen


def _read_everywhere(checks: list[FrozenLM], layout: Arrangement, vectors: dict, ks: list[int], targets: list[list[int]],
                     recipe: Recipe, seen: dict, due: bool) -> tuple[bool, list[float] | None]:
    """A group exact in the compute dtype (rows ``ks`` of ``vectors``), read in every check dtype
    when ``due`` (after a miss, every RECHECK steps) or when this step's polish passes (``seen``)
    read every check a batch can (the rest, read alone, then cost a forward only if they pass):
    whether it was read, and its margins there as :func:`_margins_everywhere` gives them."""
    known = {c: [seen[c][k] for k in ks] for c in seen if all(k in seen[c] for k in ks)}
    if not (known and len(known) == sum(c.batch_invariant for c in checks) or due):
        return False, None
    return True, _margins_everywhere(checks, layout, {n: v[ks].detach() for n, v in vectors.items()}, targets, recipe, known)


@torch.no_grad()
def _margins_everywhere(checks: list[FrozenLM], layout: Arrangement, vectors: dict, targets: list[list[int]],
                        recipe: Recipe, known: dict | None = None) -> list[float] | None:
    """Each text's smallest margin over one forward pass of every model in ``checks`` (or its
    (accuracy, margin) per text in ``known``, read this step), or None if any of them misses a
    target or the recipe's margin. Where a batch's shape moves logits, each text is read alone."""
    found, known = None, known or {}
    for lm in sorted(checks, key=lambda c: c not in known):  # the free reads first
        if lm in known:
            accuracy, margins = (list(x) for x in zip(*known[lm]))
        else:
            batches = [list(range(len(targets)))] if lm.batch_invariant else [[k] for k in range(len(targets))]
            scores = [evaluate(lm, layout, {n: v[b] for n, v in vectors.items()}, [targets[k] for k in b]) for b in batches]
            accuracy = [a for s in scores for a in s.accuracy.tolist()]
            margins = [g for s in scores for g in s.margin.tolist()]
        if not all(_solved(a, g, recipe) for a, g in zip(accuracy, margins)):
            return None
        found = margins if found is None else [min(a, b) for a, b in zip(found, margins)]
    return found


def _progress(accuracy: list[float], margin: list[float], recipe: Recipe) -> tuple[float, float]:
    """How far a group is from solved, for ``patience``: its accuracy, then, once every target
    leads, its smallest margin up to the one the recipe asks for."""
    exact = all(a == 1.0 for a in accuracy)
    return sum(accuracy), min(min(margin), recipe.margin) if exact and recipe.margin else -math.inf


def _solved(accuracy: float, margin: float, recipe: Recipe) -> bool:
    """The one test of a text being reconstructed: every target leads, by the recipe's margin."""
    return accuracy == 1.0 and margin >= recipe.margin


def _param_rows(idx: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """Rows of ``param`` that the texts at ``idx`` use: their own, or row 0 if shared."""
    return idx if param.shape[0] > 1 else torch.zeros_like(idx)


def _cross_entropy(logits: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(B, N) cross-entropy of logits (B, N, V), each row's softmax over contiguous memory, not
    over a transposed view."""
    return F.cross_entropy(logits.flatten(0, 1), t.flatten(), ignore_index=IGNORE, reduction="none").view_as(t)


def evaluate(lm: FrozenLM, layout: Arrangement, vectors: dict[str, torch.Tensor], targets: list[list[int]],
             first_weight: float = 1.0, temperature: float = 1.0, focus: float = 0.0, focus_fade: bool = False) -> Scores:
    """Per text, from one forward pass: the objective (mean cross-entropy of logits / ``temperature``,
    each target's times (1 - p)^``focus``, or ^(focus x the text's error rate) if ``focus_fade``, the
    first target weighted by ``first_weight``), the plain mean cross-entropy, accuracy and smallest margin."""
    z = layout.inputs(vectors, targets, lm)
    width = max(len(t) for t in targets)
    t = torch.full((len(targets), width), IGNORE, dtype=torch.long)
    for k, ids in enumerate(targets):
        t[k, : len(ids)] = torch.tensor(ids)
    t = t.to(z.device)
    logits = lm.logits(z)[:, layout.outputs(width)].float()
    valid = t != IGNORE
    n = valid.sum(1)
    with torch.no_grad():
        safe = t.clamp(min=0).unsqueeze(-1)
        top2 = logits.topk(2, dim=-1).values
        right = logits.gather(-1, safe).squeeze(-1)
        runner_up = torch.where(right >= top2[..., 0], top2[..., 1], top2[..., 0])
        lead = (right - runner_up).masked_fill(~valid, math.inf)
        acc = ((lead > 0) & valid).sum(1) / n
    ce = _cross_entropy(logits, t)
    objective = ce if temperature == 1.0 else _cross_entropy(logits / temperature, t)
    if focus:
        gamma = focus * (1 - acc).unsqueeze(1) if focus_fade else focus
        objective = objective * (1 - (-objective).exp()).clamp(min=1e-12).pow(gamma)  # 0^0 has no gradient
    weighted = torch.cat([objective[:, :1] * first_weight, objective[:, 1:]], dim=1) if first_weight != 1.0 else objective
    mean_ce = ce.detach().sum(1) / n
    return Scores(weighted.sum(1) / n, mean_ce, acc, lead.min(1).values)
