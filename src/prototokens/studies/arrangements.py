"""Arrangements (Table 1): token accuracy of each layout of e and m over lengths 1, 2, 4, ...

Every text is run at every length with every layout (no climbing), one run folder per layout
below the study's folder, so each layout resumes on its own; length by length, so that a long
run stopped part way has every layout up to the same length.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..layout import LAYOUTS
from ..metrics import mean_std
from ..model import FrozenLM
from ..recipe import label, steps
from ..records import RunFolder
from . import capacity
from .common import SampledConfig, names, option, sample, save_config, write_markdown
from .report import load_runs

NAME, HELP = "arrangements", "the five layouts over lengths 1, 2, 4, ... (Table 1)"
SHARDED = True  # under torchrun the ranks share its units (see common.py)


@dataclass(kw_only=True)
class Config(SampledConfig):
    texts: int = option(4, "how many texts", positive=True)
    max_length: int = option(16, "lengths 1, 2, 4, ... up to this", positive=True)
    layouts: list[str] = option([n for n, layout in LAYOUTS.items() if not layout.fixed_start], "the layouts to compare")
    seeds: int = option(1, "seeds per length", positive=True)

    def __post_init__(self):
        super().__post_init__()
        names(self.layouts, LAYOUTS, "layout")


def lengths_up_to(n: int) -> list[int]:
    """1, 2, 4, ... up to n (n itself included)."""
    out = [1]
    while out[-1] * 2 < n:
        out.append(out[-1] * 2)
    return sorted(set(out + [n]))


def run(lm: FrozenLM, config: Config, folder) -> dict[str, RunFolder]:
    """Every layout on every text at every length, into ``folder``/LAYOUT (resumed), one length
    on every layout before the next, so a run cut short leaves whole columns of the table."""
    save_config(folder, NAME, config)
    lengths = lengths_up_to(config.max_length)
    texts = sample(lm, config, config.texts, lengths[-1])
    for n in lengths:
        runs = {layout: capacity.sweep(lm, texts, Path(folder) / layout, source=config.source, grid=lengths,
                                       seeds=config.seeds, recipe=config.recipe, layout=layout, climb=False, upto=n,
                                       progress=config.progress)
                for layout in config.layouts}
    return runs


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


def report(folder) -> list[Path]:
    """arrangements.md from the layouts' run folders."""
    runs = {r["settings"]["layout"]: r for r in load_runs(folder)}
    runs = {name: runs[name] for name in LAYOUTS if name in runs}
    s = next(iter(runs.values()))["settings"]
    body = (f"# Arrangements (Table 1)\n\n{s['model']}, {len(s['texts'])} texts from {s['source']}, recipe "
            f"{label(s['recipe'])} ({steps(s['recipe'])}), best of {s['seeds']} seed(s); "
            "token accuracy, mean ± std over texts.\n\n" + table({k: r["records"] for k, r in runs.items()}))
    return [write_markdown(folder, NAME, body)]
