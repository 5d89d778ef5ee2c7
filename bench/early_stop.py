"""Could a seed be given up by its accuracy early on? Replays a stop rule "give the seed up at
step K if its accuracy is below A" on every seed recorded by the recipe screens
(bench/results/recipes/*.json: each text's accuracy every 10 steps, seed by seed), with no
model run.

    .venv/bin/python bench/early_stop.py [--n 32] [--at 100,150,200] [--below 0.05,0.1,0.2]

For each rule it prints the seeds it would stop, how many of them went on to solve their text
(solves lost, each needing another seed), and the steps it would save. A seed's steps already
reflect ``patience``, so the savings are on top of it. The net is the steps saved less the lost
solves priced at the screens' own steps per solve (all steps over all solves at that N).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SCREENS = Path(__file__).parent / "results" / "recipes"


def seeds(n: int) -> list[dict]:
    """Every recorded start at length ``n`` (a seed, or one of a seed's raced starts): its
    accuracy by step and whether it solved its text (the row's kept seed and start)."""
    found = []
    for path in sorted(SCREENS.glob("*.json")):
        screen = json.loads(path.read_text())
        if screen["n"] != n:
            continue
        for row in screen["rows"]:
            by_start: dict[tuple, dict[int, float]] = {}
            for *start, step, accuracy in row.get("accuracy_every_10", []):  # [seed, step, acc] or [seed, start, step, acc]
                by_start.setdefault(tuple(start), {})[step] = accuracy
            kept = (row["seed"], row.get("start", 0))
            for start, curve in by_start.items():
                found.append({"screen": path.stem, "curve": curve, "steps": max(curve),
                              "solved": row["status"] == "solved" and start == kept[:len(start)]})
    return found


def accuracy_at(curve: dict[int, float], step: int) -> float:
    return curve[max(s for s in curve if s <= step)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--at", default="100,150,200")
    parser.add_argument("--below", default="0.05,0.1,0.2")
    args = parser.parse_args()
    found = seeds(args.n)
    if not found:
        raise SystemExit(f"early_stop: no screen at N = {args.n} in {SCREENS}")
    steps, solves = sum(s["steps"] for s in found), sum(s["solved"] for s in found)
    per_solve = steps / max(1, solves)
    screens = sorted({s["screen"] for s in found})
    print(f"N = {args.n}: {len(found)} seeds from {len(screens)} screens, {solves} solved, {steps} steps "
          f"({per_solve:.0f} a solve)\n")
    print("| rule | seeds stopped | of them solved later | steps saved | net, at the screens' steps a solve |")
    print("|---|---|---|---|---|")
    for at in (int(a) for a in args.at.split(",")):
        for below in (float(b) for b in args.below.split(",")):
            stopped = [s for s in found if s["steps"] > at and accuracy_at(s["curve"], at) < below]
            lost = sum(s["solved"] for s in stopped)
            saved = sum(s["steps"] - at for s in stopped)
            net = saved - lost * per_solve
            print(f"| accuracy < {below} at step {at} | {len(stopped)} | {lost} | {saved} ({saved / steps:.1%}) "
                  f"| {net:+.0f} ({net / steps:+.1%}) |")


if __name__ == "__main__":
    main()
