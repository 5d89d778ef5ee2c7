"""Could a seed be given up by its accuracy early on? Replays a stop rule "give the seed up at
step K if its accuracy is below A" on every seed recorded by the recipe screens
(bench/results/recipes/*.json: each text's accuracy every 10 steps, seed by seed), with no
model run.

    .venv/bin/python bench/early_stop.py [--n 32] [--at 100,150,200] [--below 0.05,0.1,0.2]

For each rule it prints the seeds it would stop, how many of them went on to solve their text
(solves lost, each needing another seed), and the steps it would save. A seed's steps already
reflect ``patience``, so the savings are on top of it. The net is the steps saved less the lost
solves priced at the screens' own steps per solve (all steps over all solves at that N).

    .venv/bin/python bench/early_stop.py --n 64 --race 50,100,200

replays a race instead (``--starts``): on every text where one recorded seed solved and another
did not (in a screen that raced, the starts of the seed that solved), is the seed ahead at step R
(best accuracy) the one that solved, and how many batch-row steps would the race have cost
against those seeds run one after another?
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SCREENS = Path(__file__).parent / "results" / "recipes"


def seeds(n: int) -> list[dict]:
    """Every recorded start at length ``n`` (a seed, or one of a seed's raced starts): its
    accuracy by step, whether it solved its text (the row's kept seed and start), and the race
    it ran in (its seed, for a screen that raced starts)."""
    found = []
    for path in sorted(SCREENS.glob("*.json")):
        screen = json.loads(path.read_text())
        if screen["n"] != n:
            continue
        for row in screen["rows"]:
            by_start: dict[tuple, dict[int, float]] = {}
            for *start, step, accuracy in row.get("accuracy_every_10", []):  # [seed, step, acc] or [seed, start, step, acc]
                by_start.setdefault(tuple(start), {})[step] = accuracy
            if not by_start:
                continue
            # rows from before `seed` was recorded: seeds run in turn until one solves, so the last
            kept = (row.get("seed", max(start[0] for start in by_start)), row.get("start", 0))
            for start, curve in by_start.items():
                found.append({"screen": path.stem, "text": row["text"], "race": start[:-1], "curve": curve, "steps": max(curve),
                              "solved": row["status"] == "solved" and start == kept[:len(start)]})
    return found


def accuracy_at(curve: dict[int, float], step: int) -> float:
    return curve[max(s for s in curve if s <= step)]


def race(found: list[dict], at: list[int]) -> None:
    """Print, for each race length, which texts' solving seed led at that step."""
    texts: dict[tuple, list[dict]] = {}
    for s in found:
        texts.setdefault((s["screen"], s["text"], s["race"]), []).append(s)  # a raced screen's seed is its race
    raced = {k: v for k, v in texts.items() if len(v) > 1 and sum(s["solved"] for s in v) == 1}
    print(f"{len(raced)} texts with a solving seed and at least one other\n")
    print("| race steps | solver ahead | where it was not (accuracies of the seeds at that step) "
          "| row-steps raced, where it picks the solver | the same texts' seeds one after another |")
    print("|---|---|---|---|---|")
    for r in at:
        misses, raced_steps, serial = [], 0, 0
        for (screen, text, _), starts in sorted(raced.items()):
            lead = max(starts, key=lambda s: accuracy_at(s["curve"], r))
            solver = next(s for s in starts if s["solved"])
            if lead is solver:
                raced_steps += len(starts) * r + max(0, solver["steps"] - r)
                serial += sum(s["steps"] for s in starts)
            else:
                accuracies = " / ".join(f"{accuracy_at(s['curve'], r):.2f}" for s in starts)
                misses.append(f"{screen} {text} ({accuracies})")
        print(f"| {r} | {len(raced) - len(misses)} of {len(raced)} | {'; '.join(misses)} | {raced_steps} | {serial} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--at", default="100,150,200")
    parser.add_argument("--below", default="0.05,0.1,0.2")
    parser.add_argument("--race", help="race lengths to replay instead, e.g. 50,100,200")
    args = parser.parse_args()
    found = seeds(args.n)
    if not found:
        raise SystemExit(f"early_stop: no screen at N = {args.n} in {SCREENS}")
    if args.race:
        return race(found, [int(r) for r in args.race.split(",")])
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
