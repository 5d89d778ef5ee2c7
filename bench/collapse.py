"""Collapses of the capacity sweeps, rerun: the one-step records whose accuracy stayed below
0.25 at 8 tokens or more (every output one token), each unit rerun as it ran (same texts,
batch, length and seed) with a change to its recipe, such as a warm-up.

    OMP_NUM_THREADS=1 .venv/bin/python bench/collapse.py ROOT warmup=50 [--max-length 45]

With no KEY=VALUE the units rerun unchanged, which checks that the committed collapses
reproduce. ROOT may be one run folder. Prints, per record of those units, the committed accuracy
and the rerun's; writes bench/results/collapse-ROOT-CHANGE.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import prototokens as pt
from prototokens.data import sample_passages
from prototokens.optimize import optimize
from prototokens.recipe import Recipe
from prototokens.studies.common import THRESHOLD, Text
from prototokens.studies.report import load_runs
from variants import value

COLLAPSED, SHORTEST = 0.25, 8


def collapsed_units(run: dict, max_length: int) -> dict[tuple[int, int], list[dict]]:
    """(length, seed) -> the unit's records, for the units holding a collapsed record."""
    units: dict[tuple[int, int], list[dict]] = {}
    for r in run["records"]:
        units.setdefault((r["length"], r["seed"]), []).append(r)
    return {k: rs for k, rs in units.items() if SHORTEST <= k[0] <= max_length
            and any(r["accuracy"] < COLLAPSED for r in rs)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", type=Path, help="a capacity run folder, or a folder of them")
    p.add_argument("changes", nargs="*", metavar="KEY=VALUE", help="Recipe fields to change")
    p.add_argument("--max-length", type=int, default=45)
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    args = p.parse_args()
    changes = {k: value(k, v) for k, v in (c.split("=", 1) for c in args.changes)}
    lm = pt.load_model()
    runs = [r for r in load_runs(args.root) if r["settings"]["study"] == "capacity" and not r["settings"]["shared_m"]]
    rows = []
    print(f"{lm.name}, torch threads {torch.get_num_threads()}, change: {changes or 'none'}")
    print(f"{'run':>10} {'N':>4} {'seed':>4} {'text':>45} {'committed':>9} {'rerun':>6} {'best at step':>12}")
    for run in runs:
        s = run["settings"]
        if s["fingerprint"] != lm.fingerprint:
            raise SystemExit(f"{run['folder']} was run on another model ({s['model']})")
        units = collapsed_units(run, args.max_length)
        if not units:
            continue
        passages = sample_passages(lm, s["source"], len(s["texts"]), s["grid"][-1])
        ids = {t.id: t.target_ids for t in map(Text.from_passage, passages)}
        if list(ids) != s["texts"]:
            raise SystemExit(f"{run['folder']}: the sample no longer gives the run's texts")
        recipe = Recipe.from_dict(s["recipe"]).with_overrides(**changes)
        for (n, seed), records in sorted(units.items()):
            records = sorted(records, key=lambda r: s["texts"].index(r["text"]))
            started = time.perf_counter()
            fit = optimize(lm, [ids[r["text"]][:n] for r in records], layout=s["layout"], recipe=recipe, seed=seed)
            seconds = time.perf_counter() - started
            for i, r in enumerate(records):
                row = {"run": run["folder"].name, "length": n, "seed": seed, "text": r["text"],
                       "committed": r["accuracy"], "committed_steps": r["steps"], "rerun": fit.outcomes[i].accuracy,
                       "rerun_steps": fit.outcomes[i].steps, "seconds": seconds, "batch": len(records)}
                rows.append(row)
                mark = " <- collapsed" if r["accuracy"] < COLLAPSED else ""
                print(f"{row['run']:>10} {n:>4} {seed:>4} {r['text']:>45} {r['accuracy']:>9.2f} "
                      f"{fit.outcomes[i].accuracy:>6.2f} {fit.outcomes[i].steps:>12}{mark}", flush=True)
    was = [r for r in rows if r["committed"] < COLLAPSED]
    mates = [r for r in rows if r["committed"] >= COLLAPSED]
    print(f"collapsed records: {len(was)}; rerun: {sum(r['rerun'] < COLLAPSED for r in was)} collapsed, "
          f"{sum(r['rerun'] >= THRESHOLD for r in was)} solved")
    print(f"their batch mates: {len(mates)}; solved committed {sum(r['committed'] >= THRESHOLD for r in mates)}, "
          f"rerun {sum(r['rerun'] >= THRESHOLD for r in mates)}")
    name = "-".join(f"{k}{v}" for k, v in changes.items()) or "unchanged"
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"collapse-{args.root.name}-{name}.json"
    out.write_text(json.dumps({"model": lm.name, "fingerprint": lm.fingerprint, "changes": changes,
                               "recipe": recipe.to_dict(), "threads": torch.get_num_threads(),
                               "max_length": args.max_length, "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
