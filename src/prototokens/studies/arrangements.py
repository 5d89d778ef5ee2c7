"""Arrangements (Table 1): token accuracy of each layout of e and m over lengths 1, 2, 4, ...

Every text is run at every length with every layout (no climbing), one run folder per layout
below the study's folder, so each layout resumes on its own.
"""

from __future__ import annotations

from pathlib import Path

from ..layout import LAYOUTS
from ..metrics import mean_std
from ..model import FrozenLM
from ..recipe import DEFAULT_RECIPE, Recipe
from ..records import RunFolder
from . import capacity
from .capacity import Text


def lengths_up_to(n: int) -> list[int]:
    """1, 2, 4, ... up to n (n itself included)."""
    out = [1]
    while out[-1] * 2 < n:
        out.append(out[-1] * 2)
    return sorted(set(out + [n]))


def run(lm: FrozenLM, texts: list[Text], folder, *, source: str, lengths: list[int], layouts: list[str] = list(LAYOUTS),
        seeds: int = 1, recipe: "str | Recipe" = DEFAULT_RECIPE, batch_size: int = 8, progress: bool = True) -> dict[str, RunFolder]:
    """Every layout on every text at every length, into ``folder``/LAYOUT (resumed)."""
    return {layout: capacity.run(lm, texts, Path(folder) / layout, source=source, grid=lengths, seeds=seeds,
                                 recipe=recipe, layout=layout, batch_size=batch_size, climb=False, progress=progress)
            for layout in layouts}


def table(runs: dict[str, list[dict]]) -> str:
    """Markdown: mean ± std over texts of the best seed's accuracy, per layout and length."""
    lengths = sorted({r["length"] for records in runs.values() for r in records})
    lines = ["| layout | arrangement | " + " | ".join(f"N={n}" for n in lengths) + " |",
             "|---|---|" + "---|" * len(lengths)]
    for layout, records in runs.items():
        cells = []
        for n in lengths:
            best = {}
            for r in records:
                if r["length"] == n:
                    best[r["text"]] = max(best.get(r["text"], 0.0), r["accuracy"])
            values = list(best.values())
            cells.append("{:.2f} ± {:.2f}".format(*mean_std(values)) if values else "-")
        lines.append(f"| {layout} | {LAYOUTS[layout].pattern} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
