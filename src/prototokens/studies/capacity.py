"""Capacity (Table 3, Fig. 1): the longest length a text is reconstructed at >= 0.99 accuracy.

One-step (proto-tokens, any layout) or the cramming baseline (``mem`` [mem] vectors), where
the accuracy that counts is that of free-running greedy generation; its teacher-forced
accuracy, token gain and information gain are recorded beside it.

Every text climbs the length grid together with the others (one batch per length and seed).
At each length the seeds are tried in turn, each only on the texts that have not yet passed;
a text stops climbing at the first length that fails with every seed. One record per (text,
length, seed); with a shared m the whole group is one unit and its records are written together,
and a length passes only when one seed's m serves every text of the group (so the group climbs,
and is retried, as a whole).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from .. import distributed
from ..cramming import Cramming
from ..errors import PrototokensError
from ..layout import DEFAULT_LAYOUT, Arrangement, get_layout, resolve_layout
from ..model import FrozenLM
from ..recipe import Recipe, get_recipe
from ..records import RunFolder
from .common import THRESHOLD, SampledConfig, Text, option, sample, unit

NAME, HELP = "capacity", "sweep texts over lengths: the longest reconstructed at >= 0.99 (Table 3)"
SHARDED = True  # under torchrun each rank climbs its share of the texts (see common.py)
GRID = [4, 5, 8, 11, 16, 22, 32, 45, 64, 90, 128, 181, 256, 362, 512, 724, 1024, 1448]


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

    def __post_init__(self):
        super().__post_init__()
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
                 recipe=config.recipe, layout=config.arrangement, batch_size=config.batch_size, progress=config.progress)


def report(folder) -> list[Path]:
    """report.md and its plots, from the run folders at or below ``folder``."""
    from .report import write

    return write(folder)


def settings(lm: FrozenLM, source: str, texts: list[Text], grid: list[int], seeds: int, shared: bool,
             recipe: Recipe, layout: Arrangement) -> dict:
    method = layout.describe() | ({"shared_m": shared} if "m" in layout.vectors else {})
    return method | {"model": lm.name, "fingerprint": lm.fingerprint, "source": source,
                     "texts": [t.id for t in texts], "grid": grid, "seeds": seeds,
                     "recipe": recipe.to_dict(), "threshold": THRESHOLD}


def sweep(lm: FrozenLM, texts: list[Text], folder, *, source: str, grid: list[int] = GRID, seeds: int = 1,
          shared: bool = False, recipe: "str | Recipe | None" = None, layout: "str | Arrangement" = DEFAULT_LAYOUT,
          batch_size: int = 8, climb: bool = True, progress: bool = True) -> RunFolder:
    """Sweep ``texts`` over ``grid`` into ``folder`` (resuming what it already holds).

    ``layout`` may be the cramming baseline's :class:`~prototokens.cramming.Cramming` (never with
    a shared m); ``recipe`` None is the layout's default. ``climb=False`` runs every text at
    every length, passed or not (the arrangements study).
    Under torchrun each rank climbs its shard of the texts (all of them on rank 0 with a shared
    m, whose group is one unit), and every rank returns the merged folder.
    """
    layout = resolve_layout(layout)
    recipe = get_recipe(recipe) if recipe is not None else layout.recipe(None)
    if shared and "m" not in layout.vectors:
        raise PrototokensError(f"{layout.name} has no m to share")
    grid = [n for n in grid if n <= min(len(t.target_ids) for t in texts)]
    run_folder = RunFolder(folder, settings(lm, source, texts, grid, seeds, shared, recipe, layout))
    climbing = (texts if distributed.is_main() else []) if shared else distributed.shard(texts)
    bar = tqdm(total=len(climbing) * len(grid), disable=not progress, desc="capacity", unit="text-length")
    for n in grid:
        passed: set[str] = set()
        for seed in range(seeds):
            todo = [t for t in climbing if t.id not in passed]
            if not todo:
                break
            batches = [todo] if shared else [todo[i: i + batch_size] for i in range(0, len(todo), batch_size)]
            for batch in batches:
                records = unit(lm, run_folder, batch, n, seed, shared="m" if shared else None, recipe=recipe,
                               layout=layout, progress=progress)
                ok = {r["text"] for r in records if r["accuracy"] >= THRESHOLD}
                if not shared or len(ok) == len(batch):  # a shared m counts only when it serves every text
                    passed |= ok
        bar.update(len(climbing))
        bar.set_postfix(length=n, climbing=len(passed))
        climbing = [t for t in climbing if t.id in passed or not climb]
        if not climbing:
            break
    bar.close()
    run_folder.gather()
    return run_folder
