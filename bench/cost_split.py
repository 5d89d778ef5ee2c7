"""Where a latency row's fp32-step equivalents go, from bench/latency.py's JSONs (no model run).

    .venv/bin/python bench/cost_split.py bench/results/latency-v9-seed2-amx-a/*.json ...

Per row: the row-steps in all (every seed and raced start), the steps of the seed that solved
(its race included), what one row-step cost in fp32-step equivalents (optimisation time over
row-steps, over the fp32 step), and what is not optimisation (model load, checks after the end,
the file; unknown for an unsolved row, whose optimisation time ends at its kept state). Then a
bound no choice of seeds or starts can beat: the equivalents had the seed that solved run alone
from the start, at the same cost a step. A recipe that only picks seeds better
(races, restarts, early stops) is above that bound; to go below it, a seed has to climb faster.
Last, per recipe: texts solved, solved by their first seed, the median (an unsolved row ranked
after every solved one, at what it spent) and the equivalents in all.
"""

from __future__ import annotations

import json
import statistics
import sys


def main():
    rows = [r for path in sys.argv[1:] for r in json.loads(open(path).read())["rows"]]
    if not rows:
        raise SystemExit("usage: cost_split.py LATENCY_JSON ... (bench/latency.py's output, with rows)")
    print("| recipe | text | status | row-steps | solving seed's steps | equivalents a row-step "
          "| not optimising (equivalents) | equivalents | solving seed alone |")
    print("|---|---|---|---|---|---|---|---|---|")
    spent, alone = [], []
    for r in rows:
        spent.append(r["fp32_steps"])
        if r["status"] != "solved":  # its optimize_s ends at its kept state, not at its last step
            alone.append(float("inf"))
            print(f"| {r['recipe']} | {r['text']} | {r['status']} | {r['steps']} | - | - | - | {r['fp32_steps']:.0f} | - |")
            continue
        per_step = r["optimize_s"] / r["steps"] / r["fp32_step_s"]
        rest = (r["wall_s"] - r["optimize_s"]) / r["fp32_step_s"]
        alone.append(r["seed_steps"] * per_step + rest)
        print(f"| {r['recipe']} | {r['text']} | {r['status']} | {r['steps']} | {r['seed_steps']} | {per_step:.2f} | {rest:.0f} "
              f"| {r['fp32_steps']:.0f} | {alone[-1]:.0f} |")
    print(f"\n{len(rows)} rows: median {statistics.median_low(spent):.0f} equivalents as run, "
          f"{statistics.median_low(alone):.0f} had each text's solving seed run alone (low medians)")
    for recipe in dict.fromkeys(r["recipe"] for r in rows):
        mine = [r for r in rows if r["recipe"] == recipe]
        solved = [r for r in mine if r["status"] == "solved"]
        ranked = [r["fp32_steps"] for r in sorted(mine, key=lambda r: (r["status"] != "solved", r["fp32_steps"]))]
        middle = (ranked[(len(ranked) - 1) // 2] + ranked[len(ranked) // 2]) / 2
        print(f"{recipe}: {len(solved)}/{len(mine)} solved, {sum(r['seed'] == 0 for r in solved)} by their first seed; "
              f"median {middle:.0f} equivalents, {sum(ranked):.0f} in all")


if __name__ == "__main__":
    main()
