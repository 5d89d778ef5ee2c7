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

from tqdm.auto import tqdm

from .. import cramming, distributed
from ..cramming import Cramming
from ..layout import DEFAULT_LAYOUT, resolve_layout
from ..model import FrozenLM
from ..recipe import DEFAULT_RECIPE, Recipe, get_recipe
from ..records import RunFolder
from .common import THRESHOLD, Text, unit

__all__ = ["GRID", "THRESHOLD", "Text", "run", "settings", "unit"]
GRID = [4, 5, 8, 11, 16, 22, 32, 45, 64, 90, 128, 181, 256, 362, 512, 724, 1024, 1448]


def settings(lm: FrozenLM, source: str, texts: list[Text], grid: list[int], seeds: int, shared: bool,
             recipe: Recipe, layout: str, mem: int | None) -> dict:
    method = {"study": "capacity", "layout": layout, "shared_m": shared} if mem is None else {
        "study": "cramming", "mem": mem, "inputs": "[start][mem]xK, then the text"}
    return method | {"model": lm.name, "fingerprint": lm.fingerprint, "source": source,
                     "texts": [t.id for t in texts], "grid": grid, "seeds": seeds,
                     "recipe": recipe.to_dict(), "threshold": THRESHOLD}


def run(lm: FrozenLM, texts: list[Text], folder, *, source: str, grid: list[int] = GRID, seeds: int = 1,
        shared: bool = False, recipe: "str | Recipe | None" = None, layout: str = DEFAULT_LAYOUT, mem: int | None = None,
        batch_size: int = 8, climb: bool = True, progress: bool = True) -> RunFolder:
    """Sweep ``texts`` over ``grid`` into ``folder`` (resuming what it already holds).

    ``mem=K`` runs the cramming baseline with K [mem] vectors instead of proto-tokens. ``recipe``
    defaults to ``fast`` for proto-tokens and to Kuratov et al.'s ``cramming`` for the baseline.
    ``climb=False`` runs every text at every length, passed or not (the arrangements study).
    Under torchrun each rank climbs its shard of the texts (all of them on rank 0 with a shared
    m, whose group is one unit), and every rank returns the merged folder.
    """
    if mem is not None:
        recipe, shared, layout = cramming.baseline_recipe(recipe), False, Cramming(mem)
    recipe, layout = get_recipe(recipe or DEFAULT_RECIPE), resolve_layout(layout)
    grid = [n for n in grid if n <= min(len(t.target_ids) for t in texts)]
    run_folder = RunFolder(folder, settings(lm, source, texts, grid, seeds, shared, recipe, layout.name, mem))
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
