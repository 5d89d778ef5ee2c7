"""Sharing (Table 2): one vector (m or e) shared by each group of S texts, over several seeds.

Texts are cut into consecutive groups of S (a remainder too small for a group is left out);
every group is fitted with every seed, one run folder per (shared vector, S); S = 1 shares
nothing, so one run serves both vectors. The table gives
"max" (each text's best seed, averaged over texts) and "avg" (over texts and seeds) accuracy,
as the paper does, and how many seeds a group needed until all its texts passed.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

from tqdm.auto import tqdm

from ..layout import DEFAULT_LAYOUT
from ..model import FrozenLM
from ..recipe import DEFAULT_RECIPE, Recipe, get_recipe
from ..records import RunFolder
from .capacity import THRESHOLD, Text, unit


def run(lm: FrozenLM, texts: list[Text], folder, *, source: str, length: int, sizes: list[int], shared: list[str],
        seeds: int = 3, recipe: "str | Recipe" = DEFAULT_RECIPE, layout: str = DEFAULT_LAYOUT,
        progress: bool = True) -> dict[tuple[str, int], RunFolder]:
    """Fit every group of every size with every seed into ``folder``/shared-V-sS (resumed)."""
    recipe = get_recipe(recipe)
    texts = [Text(t.id, t.target_ids[:length], t.meta) for t in texts]
    folders = {}
    work = [(v if s > 1 else None, s) for s in sizes if len(texts) // s for v in (shared if s > 1 else [None])]
    bar = tqdm(total=sum(len(texts) // s * s * seeds for _, s in work), disable=not progress, desc="sharing", unit="text-seed")
    for vector, size in work:  # S = 1 shares nothing: one run stands for both vectors
        # a shared vector ties a group into one unit; with nothing shared, all texts go in one batch
        groups = [texts[i: i + size] for i in range(0, len(texts) // size * size, size)] if vector else [texts]
        run_folder = RunFolder(Path(folder) / (f"shared-{vector}-s{size}" if vector else "s1"), {
            "study": "sharing", "shared": vector, "group_size": size, "model": lm.name, "fingerprint": lm.fingerprint,
            "source": source, "texts": [t.id for t in texts], "length": length, "seeds": seeds, "layout": layout,
            "recipe": recipe.to_dict(), "threshold": THRESHOLD})
        for seed in range(seeds):
            for group in groups:
                unit(lm, run_folder, group, length, seed, vector, recipe, layout, progress)
                bar.update(len(group))
        folders |= {(v, size): run_folder for v in ([vector] if vector else shared)}
    bar.close()
    return folders


def summary(records: list[dict]) -> dict:
    """max / avg accuracy and the seeds each group needed (None: no seed passed every text)."""
    by_text, by_group = defaultdict(list), defaultdict(lambda: defaultdict(list))
    for r in records:
        by_text[r["text"]].append(r["accuracy"])
        by_group[r["group"] or r["text"]][r["seed"]].append(r["accuracy"])  # no group: the text alone
    needed = [next((seed + 1 for seed in sorted(seeds) if min(seeds[seed]) >= THRESHOLD), None)
              for seeds in by_group.values()]
    return {"max": statistics.mean(max(a) for a in by_text.values()),
            "avg": statistics.mean(a for accs in by_text.values() for a in accs),
            "seeds_needed": needed}


def table(folders: dict[tuple[str, int], list[dict]]) -> str:
    """Markdown in the shape of Table 2: rows shared vector x aggregate, columns S."""
    sizes = sorted({s for _, s in folders})
    lines = ["| shared | agg | " + " | ".join(f"S={s}" for s in sizes) + " |", "|---|---|" + "---|" * len(sizes)]
    for vector in sorted({v for v, _ in folders}):
        stats = {s: summary(folders[vector, s]) for s in sizes if (vector, s) in folders}
        for agg in ("max", "avg"):
            lines.append(f"| {vector} | {agg} | " + " | ".join(
                f"{stats[s][agg]:.2f}" if s in stats else "-" for s in sizes) + " |")
        lines.append(f"| {vector} | groups passed (seeds needed) | " + " | ".join(
            _needed(stats[s]["seeds_needed"]) if s in stats else "-" for s in sizes) + " |")
    return "\n".join(lines) + "\n"


def _needed(needed: list) -> str:
    passed = [n for n in needed if n is not None]
    return f"{len(passed)}/{len(needed)}" + (f" ({statistics.mean(passed):.1f})" if passed else "")
