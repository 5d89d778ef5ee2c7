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
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from .. import distributed
from ..model import FrozenLM
from ..recipe import label, steps
from ..records import RunFolder
from .common import THRESHOLD, SampledConfig, Text, names, option, read_config, sample, save_config, unit, write_markdown
from .report import load_runs

NAME, HELP = "sharing", "groups of S texts sharing m or e, over seeds (Table 2)"
SHARDED = True  # under torchrun the ranks share its units (see common.py)


@dataclass(kw_only=True)
class Config(SampledConfig):
    texts: int = option(8, "how many texts", positive=True)
    length: int = option(16, "tokens per text", positive=True)
    sizes: list[int] = option([1, 4], "group sizes S")
    vectors: list[str] = option(["m", "e"], "which vector is shared")
    seeds: int = option(3, "seeds per group", positive=True)
    batch_size: int = option(8, "texts optimised together at S = 1 (each batch's records kept as it ends)",
                             positive=True)

    def __post_init__(self):
        super().__post_init__()
        names(self.sizes, range(1, self.texts + 1), "group size")
        names(self.vectors, ["m", "e"], "shared vector")


def run(lm: FrozenLM, config: Config, folder) -> dict[tuple[str, int], RunFolder]:
    """Fit every group of every size with every seed into ``folder``/shared-V-sS (resumed)."""
    save_config(folder, NAME, config)
    recipe, length, seeds = config.recipe, config.length, config.seeds
    texts = [Text(t.id, t.target_ids[:length], t.meta) for t in sample(lm, config, config.texts, length)]
    folders = {}
    work = [(v if s > 1 else None, s) for s in config.sizes if len(texts) // s for v in (config.vectors if s > 1 else [None])]
    bar = tqdm(total=sum(len(texts) // s * s * seeds for _, s in work), disable=not config.progress, desc="sharing",
               unit="text-seed")
    for vector, size in work:  # S = 1 shares nothing: one run stands for both vectors
        run_folder = RunFolder(Path(folder) / (f"shared-{vector}-s{size}" if vector else "s1"), {
            "study": "sharing", "shared": vector, "group_size": size, "model": lm.name, "fingerprint": lm.fingerprint,
            "source": config.source, "texts": [t.id for t in texts], "length": length, "seeds": seeds,
            "layout": config.layout, "recipe": recipe.to_dict(), "threshold": THRESHOLD})
        if vector:  # a shared vector ties a group into one unit; torchrun: a share of the groups each
            mine = distributed.shard([texts[i: i + size] for i in range(0, len(texts) // size * size, size)])
        else:  # nothing shared: batches of this rank's texts, each recorded as it ends
            share = distributed.shard(texts)
            mine = [share[i: i + config.batch_size] for i in range(0, len(share), config.batch_size)]
        for seed in range(seeds):
            for group in mine:
                unit(lm, run_folder, group, length, seed, shared=vector, recipe=recipe, layout=config.layout,
                     progress=config.progress)
                bar.update(len(group))
        run_folder.gather()
        folders |= {(v, size): run_folder for v in ([vector] if vector else config.vectors)}
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


def table(folders: dict[tuple[str, int], list[dict]], expected: int | None = None) -> str:
    """Markdown in the shape of Table 2: rows shared vector x aggregate, columns S. With
    ``expected`` (texts x seeds), a study still under way also says how many of them each column
    holds: until every text has run every seed, "avg" leans towards the seeds run so far."""
    sizes = sorted({s for _, s in folders})
    lines = ["| shared | agg | " + " | ".join(f"S={s}" for s in sizes) + " |", "|---|---|" + "---|" * len(sizes)]
    for vector in sorted({v for v, _ in folders}):
        stats = {s: summary(folders[vector, s]) for s in sizes if (vector, s) in folders}
        for agg in ("max", "avg"):
            lines.append(f"| {vector} | {agg} | " + " | ".join(
                f"{stats[s][agg]:.2f}" if s in stats else "-" for s in sizes) + " |")
        lines.append(f"| {vector} | groups passed (seeds needed) | " + " | ".join(
            _needed(stats[s]["seeds_needed"]) if s in stats else "-" for s in sizes) + " |")
        done = {s: len(folders[vector, s]) for s in sizes if (vector, s) in folders}
        if expected and any(n < expected for n in done.values()):
            lines.append(f"| {vector} | runs done (texts x seeds), while under way | " + " | ".join(
                f"{done[s]}/{expected}" if s in done else f"0/{expected}" for s in sizes) + " |")
    return "\n".join(lines) + "\n"


def _needed(needed: list) -> str:
    passed = [n for n in needed if n is not None]
    return f"{len(passed)}/{len(needed)}" + (f" ({statistics.mean(passed):.1f})" if passed else "")


def report(folder) -> list[Path]:
    """sharing.md from the run folders; S = 1 stands for every shared vector of the study."""
    runs = load_runs(folder)
    vectors = [v for v in ("m", "e") if v in read_vectors(folder, runs)]
    folders = {}
    for r in runs:
        shared = r["settings"]["shared"]
        folders |= {(v, r["settings"]["group_size"]): r["records"] for v in ([shared] if shared else vectors)}
    s = runs[0]["settings"]
    body = (f"# Sharing one vector (Table 2)\n\n{s['model']}, {len(s['texts'])} texts from {s['source']}, "
            f"N={s['length']}, {s['seeds']} seeds, recipe {label(s['recipe'])} ({steps(s['recipe'])}).\n\n"
            + table(folders, len(s["texts"]) * s["seeds"]))
    return [write_markdown(folder, NAME, body)]


def read_vectors(folder, runs: list[dict]) -> list[str]:
    """The vectors the study shared: its config's, else those its folders name."""
    return read_config(folder).get("config", {}).get("vectors") or [r["settings"]["shared"] for r in runs]
