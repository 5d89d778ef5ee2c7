"""What `polish` costs in a screen, from recipe_search's JSONs (no model run): each text's steps,
its polished steps and the fp32-step equivalents they make where the compute dtype is fp32.

    .venv/bin/python bench/polish_cost.py bench/results/recipes/NAME.json ...

A polished step adds one forward and backward in bf16 to the fp32 one: 0.85 of an fp32 step
through Bf16Linear on an AVX2 CPU (bench/results/bf16-linear-avx2/bf16-linear-n64.json), so a
step counts 1 and a polished one 1.85 (checks, a forward every 10 steps, left out). A seed
polishes from the first step its fp32 read is exact (or, for a screen patched with
``polish_from=A``, reads a fraction A), found in each step's read where the JSON keeps it. Older
JSONs keep every 10th: there the first sample at or above the threshold stands in, marked
"est.", and it undercounts (a first exact read that polish's first update throws away falls
between two samples). Equivalents only for rows whose steps ran in fp32, as each row records
(``dtype``: the compute dtype as its machine resolved ``auto``; rows older than that field count
only where the recipe names fp32). Last row: texts solved, steps, polished steps and equivalents
in all (only where every row's steps ran in fp32).
"""

from __future__ import annotations

import json
import sys

BF16_PASS = 0.85  # fp32 steps a bf16 forward and backward costs through Bf16Linear (AVX2)


def polished_steps(row: dict, threshold: float) -> tuple[int, bool]:
    """Steps a text spent polishing over all its seeds (each seed's steps from its first read at or
    above ``threshold`` to its last step), and whether that count is exact: from each step's read
    where the row has it, else estimated from the 10-step samples."""
    if "accuracy_every_step" in row:
        runs = [reads for _, _, reads in row["accuracy_every_step"]]
        return sum(len(r) - 1 - next((i for i, a in enumerate(r) if a >= threshold), len(r) - 1) for r in runs), True
    by_seed = {}
    for seed, _, step, accuracy in row["accuracy_every_10"]:
        by_seed.setdefault(seed, []).append((step, accuracy))
    total = 0
    for seed, samples in by_seed.items():
        solving = row["status"] == "solved" and seed == row["seed"]
        last = row["steps"] if solving else max(s for s, _ in samples)  # a solving seed stops where it solved
        first = next((s for s, a in samples if a >= threshold), None)
        total += last - first if first is not None and last > first else 0
    return total, False


def fp32_steps(summary: dict, row: dict) -> bool:
    """Whether a row's steps ran in fp32: its recorded compute dtype, else the recipe's (unknown
    for ``auto`` in rows older than the record)."""
    return (row.get("dtype") or summary["recipe"]["dtype"]) == "float32"


def cost(steps: int, polished: int, fp32: bool) -> str:
    return f"{steps + BF16_PASS * polished:.0f}" if fp32 else "- (not fp32 steps)"


def main():
    if len(sys.argv) < 2:
        raise SystemExit("usage: polish_cost.py RECIPE_SEARCH_JSON ... (bench/recipe_search.py's output)")
    print("| screen | text | status | steps | polished | equivalents |")
    print("|---|---|---|---|---|---|")
    for path in sys.argv[1:]:
        summary = json.loads(open(path).read())
        patch = summary.get("patch", "")
        threshold = next((float(p.split("=")[1]) for p in patch.split() if p.startswith("polish_from=")), 1.0)
        solved = steps = polished = 0
        for row in summary["rows"]:
            extra, exact = polished_steps(row, threshold)
            solved, steps, polished = solved + (row["status"] == "solved"), steps + row["total_steps"], polished + extra
            print(f"| {summary['name']} | {row['text']} | {row['status']} | {row['total_steps']} | {extra}{'' if exact else ' (est.)'} "
                  f"| {cost(row['total_steps'], extra, fp32_steps(summary, row))} |")
        every_fp32 = all(fp32_steps(summary, row) for row in summary["rows"])
        print(f"| **{summary['name']}** | all {len(summary['rows'])} | {solved} solved | {steps} | {polished} "
              f"| **{cost(steps, polished, every_fp32)}** |")


if __name__ == "__main__":
    main()
