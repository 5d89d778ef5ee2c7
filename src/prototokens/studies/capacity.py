"""Capacity (Table 3, Fig. 1): the longest length a text is reconstructed at >= 0.99 accuracy.

One-step (proto-tokens, any layout) or the cramming baseline (``mem`` [mem] vectors), where
the accuracy that counts is that of free-running greedy generation; its teacher-forced
accuracy, token gain and information gain are recorded beside it.

Every text climbs the length grid (texts at the same length are batched together). At each
length the seeds are tried in turn, each only on the texts that have not yet passed; a length
fails when every seed fails. With ``search="grid"`` a text stops at its first failing length;
with ``"bisect"`` it then bisects the whole lengths between its last pass and that failure, so
its capacity is exact to a token. With ``"progressive"`` (progressive_cramming's protocol, see
progressive.py) each text grows from a first stage (one token for cramming; the grid's first
length for one-step, whose two vectors seldom steer a lone first target) by ``grow`` at a time,
warm-started, on one optimiser state, up to the grid's last length; it gets two records, at its longest exact prefix
and at the stage that failed, and one seed. One record per (text, length, seed); a rerun reads the
records back and takes the same path, so a killed sweep resumes where it stopped. With a
shared m the whole group is one unit and its records are written together, and a length
passes only when one seed's m serves every text of the group (so the group climbs, and is
retried, as a whole).

The progress bar counts text-tokens (a text tried at length N counts N; work read back from
the records is not counted). Its total is the most the sweep may still try: every text still
climbing passes every length left, and every bisection takes its most probes. So the time it
shows as left is an upper bound, which shrinks as texts stop.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import distributed
from ..cramming import Cramming
from ..errors import PrototokensError
from ..layout import DEFAULT_LAYOUT, Arrangement, get_layout, resolve_layout
from ..model import FrozenLM
from ..optimize import Fit
from ..progressive import progressive
from ..recipe import Recipe, get_recipe
from ..records import RunFolder, key_of
from .common import THRESHOLD, SampledConfig, Text, counted_accuracy, describe, names, option, sample, unit

NAME, HELP = "capacity", "sweep texts over lengths: the longest reconstructed at >= 0.99 (Table 3)"
SHARDED = True  # under torchrun each rank climbs its share of the texts (see common.py)
GRID = [4, 5, 8, 11, 16, 22, 32, 45, 64, 90, 128, 181, 256, 362, 512, 724, 1024, 1448]
SEARCHES = ("grid", "bisect", "progressive")


@dataclass(kw_only=True)
class Config(SampledConfig):
    texts: int = option(8, "how many texts", positive=True)
    grid: list[int] = option(GRID, "lengths to climb (the paper's sqrt-2 grid)")
    max_length: int | None = option(None, "cut the grid here", positive=True)
    seeds: int = option(1, "seeds per length, each only for texts not yet passed", positive=True)
    mem: int | None = option(None, "run the cramming baseline with this many [mem] vectors instead", positive=True)
    context_tokens: int = option(64, "tokens of context sampled before each text")
    batch_size: int = option(8, "texts optimised together", positive=True)
    shared_m: bool = option(False, "one m for all texts", cli=False)
    search: str = option("grid", "grid: a text stops at its first failing length; bisect: then bisects between its last pass and "
                         "that failure; progressive: each text grows a few tokens a stage, warm-started (with --recipe progressive for cramming)",
                         choices=SEARCHES)
    first: int | None = option(None, "progressive: tokens of the first stage (default: 1 for cramming, as progressive_cramming; "
                               "the grid's first length for one-step, whose two vectors seldom steer a lone first target)",
                               positive=True)
    grow: int = option(1, "progressive: tokens added at each stage", positive=True)
    stage_steps: int = option(1000, "progressive: updates a stage may take", positive=True)

    def __post_init__(self):
        super().__post_init__()
        names([self.search], SEARCHES, "search")
        self.grid = sorted({n for n in self.grid if n >= 1 and (self.max_length is None or n <= self.max_length)})
        if not self.grid:
            raise PrototokensError("the length grid is empty")

    @property
    def arrangement(self) -> Arrangement:
        return Cramming(self.mem) if self.mem else get_layout(self.layout)


def run(lm: FrozenLM, config: Config, folder) -> RunFolder:
    """Sample the config's texts and sweep them over its grid into ``folder`` (resumed)."""
    texts = sample(lm, config, config.texts, config.grid[-1], config.context_tokens)
    return sweep(lm, texts, folder, source=config.source, grid=config.grid, seeds=config.seeds, shared=config.shared_m,
                 recipe=config.recipe, layout=config.arrangement, batch_size=config.batch_size, search=config.search,
                 first=config.first, grow=config.grow, stage_steps=config.stage_steps, progress=config.progress)


def report(folder) -> list[Path]:
    """report.md and its plots, from the run folders at or below ``folder``."""
    from .report import write

    return write(folder)


def settings(lm: FrozenLM, source: str, texts: list[Text], grid: list[int], seeds: int, shared: bool,
             recipe: Recipe, layout: Arrangement, search: str = "grid", first: int = 1, grow: int = 1,
             stage_steps: int = 1000) -> dict:
    """What a run folder records of a sweep (the search only when not the grid, and a progressive
    climb's first stage only when not 1, as folders from before these were options hold; that its
    stages polish, for a recipe that does, so that a folder climbed before they did is refused)."""
    method = layout.describe() | ({"shared_m": shared} if "m" in layout.vectors else {})
    searched = {} if search == "grid" else {"search": search}
    if search == "progressive":
        searched |= ({"first": first} if first != 1 else {}) | {"grow": grow, "stage_steps": stage_steps}
        searched |= {"polished_stages": True} if recipe.polish else {}
    return method | {"model": lm.name, "fingerprint": lm.fingerprint, "source": source,
                     "texts": [t.id for t in texts], "grid": grid, "seeds": seeds,
                     "recipe": recipe.to_dict(), "threshold": THRESHOLD} | searched


@dataclass(eq=False)
class Climber:
    """A text (or a group sharing m) on its way up: the grid lengths it has not been tried at,
    the longest length it passed and the shortest it failed."""

    texts: list[Text]
    grid: list[int]
    passed: int = 0
    failed: int | None = None

    def next_length(self, search: str, climb: bool) -> int | None:
        """The length to try next; None when its capacity is known."""
        if self.failed is None or not climb:
            return self.grid[0] if self.grid else None
        if search == "bisect" and self.failed - self.passed > 1:
            return (self.passed + self.failed) // 2
        return None

    def tried(self, n: int, ok: bool) -> None:
        if self.grid and self.grid[0] == n:  # a bisection's lengths lie below every grid length left
            self.grid.pop(0)
        if ok:
            self.passed = max(self.passed, n)
        else:
            self.failed = n if self.failed is None else min(self.failed, n)

    def most_left(self, search: str, climb: bool) -> int:
        """The most text-tokens it may still be tried at (the progress bar's total)."""
        if self.next_length(search, climb) is None:
            return 0
        if self.failed is not None and climb:
            return len(self.texts) * _most_bisected(self.passed, self.failed)
        if search != "bisect" or not climb:
            return len(self.texts) * sum(self.grid)
        ends = [self.passed, *self.grid]
        return len(self.texts) * (sum(self.grid) + max(_most_bisected(lo, hi) for lo, hi in zip(ends, ends[1:])))


def _most_bisected(lo: int, hi: int) -> int:
    """The most text-tokens a bisection between a pass at ``lo`` and a failure at ``hi`` tries:
    ceil(log2(hi - lo)) lengths, each shorter than ``hi``."""
    return (hi - 1) * math.ceil(math.log2(hi - lo)) if hi - lo > 1 else 0


def sweep(lm: FrozenLM, texts: list[Text], folder, *, source: str, grid: list[int] = GRID, seeds: int = 1,
          shared: bool = False, recipe: "str | Recipe | None" = None, layout: "str | Arrangement" = DEFAULT_LAYOUT,
          batch_size: int = 8, search: str = "grid", first: int | None = None, grow: int = 1, stage_steps: int = 1000,
          climb: bool = True,
          upto: int | None = None, progress: bool = True) -> RunFolder:
    """Sweep ``texts`` over ``grid`` into ``folder`` (resuming what it already holds).

    ``layout`` may be the cramming baseline's :class:`~prototokens.cramming.Cramming` (never with
    a shared m); ``recipe`` None is the layout's default. ``search`` is "grid" (stop at a text's
    first failing length), "bisect" (then bisect down to the exact capacity) or "progressive"
    (grow each text from ``first`` tokens, None: 1 for cramming and the grid's first length for
    one-step, by ``grow`` tokens a stage of at most ``stage_steps`` updates). ``climb=False``
    runs every text at every grid length, passed or not (the arrangements study). ``upto`` stops
    this call after the grid lengths up to it (the rest of the grid stays the run's, for a later call).
    Under torchrun each rank climbs its shard of the texts (all of them on rank 0 with a shared
    m, whose group is one unit), and every rank returns the merged folder.
    """
    layout = resolve_layout(layout)
    recipe = get_recipe(recipe) if recipe is not None else layout.recipe(None)
    names([search], SEARCHES, "search")
    if shared and "m" not in layout.vectors:
        raise PrototokensError(f"{layout.name} has no m to share")
    grid = [n for n in grid if n <= min(len(t.target_ids) for t in texts)]
    # progressive.py's climb runs one start a text: a race asked at every length (--starts) is
    # refused, and a preset's race and pace beyond race_above (fast v8, v9) go unused
    if search == "progressive" and (shared or seeds != 1 or (recipe.starts != 1 and not recipe.race_above)):
        raise PrototokensError("a progressive search runs one seed and one start per text and shares nothing")
    first = first or (1 if isinstance(layout, Cramming) else grid[0])
    run_folder = RunFolder(folder, settings(lm, source, texts, grid, seeds, shared, recipe, layout, search, first, grow,
                                            stage_steps))
    mine = (texts if distributed.is_main() else []) if shared else distributed.shard(texts)
    if search == "progressive":
        grow_texts(lm, run_folder, mine, grid[-1], recipe=recipe, layout=layout, batch_size=batch_size, first=first,
                   grow=grow, stage_steps=stage_steps, progress=progress)
        run_folder.gather()
        return run_folder
    now = [n for n in grid if upto is None or n <= upto]
    climbers = [Climber(group, list(now)) for group in ([mine] if shared and mine else [[t] for t in mine])]
    bar = tqdm(total=sum(c.most_left(search, climb) for c in climbers), disable=not progress, desc="capacity", unit="tok")
    while True:
        at = defaultdict(list)  # length -> the climbers to try there next
        for c in climbers:
            if (n := c.next_length(search, climb)) is not None:
                at[n].append(c)
        if not at:
            break
        for n in sorted(at):
            before = len(run_folder.records)
            passed = attempt(lm, run_folder, at[n], n, seeds=seeds, shared=shared, recipe=recipe, layout=layout,
                             batch_size=batch_size, progress=progress)
            for c in at[n]:
                c.tried(n, c in passed)
            if len(run_folder.records) > before:  # optimised now, not read back
                bar.update(n * sum(len(c.texts) for c in at[n]))
            bar.total = bar.n + sum(c.most_left(search, climb) for c in climbers)
            bar.set_postfix(length=n, passed=f"{len(passed)}/{len(at[n])}")
    bar.close()
    run_folder.gather()
    return run_folder


def grow_texts(lm: FrozenLM, run_folder: RunFolder, texts: list[Text], longest: int, *, recipe: Recipe,
               layout: Arrangement, batch_size: int, first: int, grow: int, stage_steps: int, progress: bool) -> None:
    """The progressive search, a batch of texts at a time: each text's records at its longest
    exact prefix ("passed") and at the stage that failed ("failed"), written when its batch ends.
    A batch under way keeps its climb in ``climb-<key of its texts>.safetensors`` as each stage
    ends, so a sweep interrupted resumes mid-climb; the file goes once the batch is recorded."""
    for i in tqdm(range(0, len(texts), batch_size), desc="batches", disable=not progress):
        batch = [t for t in texts[i: i + batch_size]
                 if not {key_of(t.id, "progressive", end) for end in ("passed", "failed")} & run_folder.done]
        if not batch:
            continue
        started = time.perf_counter()
        state = run_folder.folder / f"climb-{key_of(*(t.id for t in batch))}.safetensors"
        climbs = progressive(lm, [t.target_ids[:longest] for t in batch], layout=layout, recipe=recipe, first=first,
                             grow=grow, stage_steps=stage_steps, state=state, names=[t.id for t in batch], progress=progress)
        seconds = time.perf_counter() - started
        for end in ("passed", "failed"):
            stages = [(t, getattr(c, end)) for t, c in zip(batch, climbs) if getattr(c, end)]
            if not stages:
                continue
            fit = Fit({name: torch.stack([s.vectors[name] for _, s in stages]) for name in layout.vectors},
                      [s.outcome for _, s in stages], seconds)
            for record in describe(lm, fit, [t for t, _ in stages], [t.target_ids[: s.length] for t, s in stages],
                                   [key_of(t.id, "progressive", end) for t, _ in stages], layout=layout, seed=0,
                                   group=None, seconds=seconds):
                run_folder.append(record | {"stage": end})
        state.unlink()


def attempt(lm: FrozenLM, run_folder: RunFolder, climbers: list[Climber], n: int, *, seeds: int, shared: bool,
            recipe: Recipe, layout: Arrangement, batch_size: int, progress: bool) -> list[Climber]:
    """Try ``climbers`` at length ``n``, seed after seed on those not yet passed: the ones that passed."""
    passed: set[str] = set()
    texts = [t for c in climbers for t in c.texts]
    for seed in range(seeds):
        todo = [t for t in texts if t.id not in passed]
        if not todo:
            break
        batches = [todo] if shared else [todo[i: i + batch_size] for i in range(0, len(todo), batch_size)]
        for batch in batches:
            records = unit(lm, run_folder, batch, n, seed, shared="m" if shared else None, recipe=recipe,
                           layout=layout, progress=progress)
            ok = {r["text"] for r in records if counted_accuracy(r) >= THRESHOLD}
            if not shared or len(ok) == len(batch):  # a shared m counts only when it serves every text
                passed |= ok
    return [c for c in climbers if all(t.id in passed for t in c.texts)]
