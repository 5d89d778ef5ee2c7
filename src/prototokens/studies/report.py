"""Reports from run folders: the Table 3 shape, accuracy against length, and Fig. 3.

Everything here is computed from the records alone, so committed tables and plots can be
regenerated from committed records.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

from ..errors import PrototokensError
from ..metrics import mean_std
from ..records import read_records
from .common import THRESHOLD


def load_runs(root: "str | Path") -> list[dict]:
    """Every run folder at or below ``root``: its settings and records."""
    root = Path(root)
    runs = [{"folder": p.parent, "settings": json.loads(p.read_text()), "records": read_records(p.parent / "records.jsonl")}
            for p in sorted(root.rglob("run.json"))]
    if not runs:
        raise PrototokensError(f"no run folders (with run.json) under {root}")
    return runs


def capacities(records: list[dict], accuracy: str = "accuracy") -> dict[str, dict]:
    """Per text: the longest length passed (best seed >= threshold, by the record field
    ``accuracy``), H_LM there, its record, and the best accuracy at every length. A record of a
    group sharing m scores its group's worst at that length and seed."""
    worst = {}  # (group, length, seed) -> the group's worst accuracy: a shared m must serve every text
    for r in records:
        if r.get("group"):
            unit = (r["group"], r["length"], r["seed"])
            worst[unit] = min(worst.get(unit, 1.0), r[accuracy])
    best = defaultdict(dict)  # text -> length -> best record
    for r in records:
        r = r | {accuracy: worst.get((r.get("group"), r["length"], r["seed"]), r[accuracy])}
        kept = best[r["text"]].get(r["length"])
        if kept is None or r[accuracy] > kept[accuracy]:
            best[r["text"]][r["length"]] = r
    out = {}
    for text, by_length in best.items():
        passed = [n for n, r in by_length.items() if r[accuracy] >= THRESHOLD]
        top = max(passed, default=0)
        out[text] = {"capacity": top, "h_lm_nats": by_length[top]["h_lm_nats"] if top else 0.0,
                     "record": by_length.get(top), "curve": {n: by_length[n][accuracy] for n in sorted(by_length)}}
    return out


def _mean_std(values: list[float]) -> str:
    return "{:.0f} ± {:.0f}".format(*mean_std(values)) if values else "-"


def label(settings: dict) -> str:
    study = "one-step" if settings["study"] == "capacity" else "cramming"
    sharing = "shared m" if settings.get("shared_m") else "per text"
    return f"{settings['source']}, {study}, {sharing}" if study == "one-step" else f"{settings['source']}, {study}"


def budget(settings: dict) -> str:
    """The recipe, steps and seeds a run used, as a plot names them."""
    return f"{settings['recipe']['name']}, {settings['recipe']['max_steps']} steps, {settings['seeds']} seed(s)"


def table(runs: list[dict]) -> str:
    """Markdown in the shape of the paper's Table 3: C_tokens and H_LM at capacity, mean ± std."""
    lines = ["| source | method | m | texts | capacity C_tokens | H_LM at capacity (nats) | still climbing | model | recipe | seeds |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        s, caps = run["settings"], capacities(run["records"]).values()
        method = "one-step" if s["study"] == "capacity" else f"cramming ({s.get('mem', 1)} mem)"
        m = ("shared" if s.get("shared_m") else "per text") if s["study"] == "capacity" else "-"
        lines.append(f"| {s['source']} | {method} | {m} | {len(caps)} | {_mean_std([c['capacity'] for c in caps])} | "
                     f"{_mean_std([c['h_lm_nats'] for c in caps])} | {climbing(s, caps)} | {s['model']} | "
                     f"{s['recipe']['name']} ({s['recipe']['max_steps']} steps) | {s['seeds']} |")
    return "\n".join(lines) + "\n"


def climbing(settings: dict, caps) -> int:
    """Texts of a sweep that was stopped early: they passed the longest length they were tried at,
    short of the grid's end, so their capacity is only a lower bound."""
    end = max(settings.get("grid") or [0])
    return sum(c["capacity"] == max(c["curve"]) < end for c in caps)


def cramming_table(runs: list[dict]) -> str:
    """The baseline's two accuracies side by side: teacher-forced (what its optimiser sees) and
    free-running greedy (what reconstruction gives), and Kuratov et al.'s gains at capacity."""
    lines = ["| source | records | mean teacher-forced acc | mean greedy acc | records >= 0.99 forced, < 0.99 greedy | "
             "capacity, teacher-forced | capacity, greedy | token gain at capacity | information gain at capacity (nats) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for run in (r for r in runs if r["settings"]["study"] == "cramming"):
        records = run["records"]
        forced, greedy = capacities(records, "teacher_forced_accuracy"), capacities(records).values()
        at_capacity = [c["record"] for c in greedy if c["record"]]
        lines.append(
            f"| {run['settings']['source']} | {len(records)} | "
            f"{statistics.mean(r['teacher_forced_accuracy'] for r in records):.3f} | "
            f"{statistics.mean(r['greedy_accuracy'] for r in records):.3f} | "
            f"{sum(r['teacher_forced_accuracy'] >= THRESHOLD > r['greedy_accuracy'] for r in records)} | "
            f"{_mean_std([c['capacity'] for c in forced.values()])} | {_mean_std([c['capacity'] for c in greedy])} | "
            f"{_mean_std([r['token_gain'] for r in at_capacity])} | "
            f"{_mean_std([r['information_gain_nats'] for r in at_capacity])} |")
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""


def plot_accuracy(runs: list[dict], path: Path) -> Path:
    """Accuracy (best seed, mean over texts still climbing) against length, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, ax = plt.subplots(figsize=(7, 4.5))
    every_length = set()
    for run in runs:
        curves = [c["curve"] for c in capacities(run["records"]).values()]
        lengths = sorted({n for c in curves for n in c})
        # a text that stopped climbing counts as its last accuracy at longer lengths: it failed there
        means = [statistics.mean(c.get(n, c[max(c)] if n > max(c) else 0.0) for c in curves) for n in lengths]
        every_length.update(lengths)
        ax.plot(lengths, means, marker="o", label=f"{label(run['settings'])} ({budget(run['settings'])})")
    ax.set(xscale="log", xlabel="target length N (tokens)", ylabel="token accuracy (best seed, mean over texts)",
           ylim=(0, 1.02), title=f"Reconstruction accuracy against length — {runs[0]['settings']['model']}")
    ax.set_xticks(sorted(every_length))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.axhline(THRESHOLD, color="grey", lw=0.8, ls=":")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def information_pairs(runs: list[dict]) -> dict[str, list[tuple[str, float, float]]]:
    """Per source: (text, H_LM at cramming capacity, H_LM at one-step capacity) for the texts
    that both a per-text one-step run and a cramming run of that source hold."""
    one_step = {r["settings"]["source"]: r for r in runs
                if r["settings"]["study"] == "capacity" and not r["settings"].get("shared_m")}
    crammed = {r["settings"]["source"]: r for r in runs if r["settings"]["study"] == "cramming"}
    pairs = {}
    for source in sorted(one_step.keys() & crammed.keys()):
        y, x = (capacities(r["records"]) for r in (one_step[source], crammed[source]))
        if x.keys() & y.keys():
            pairs[source] = [(t, x[t]["h_lm_nats"], y[t]["h_lm_nats"]) for t in sorted(x.keys() & y.keys())]
    return pairs


def plot_information(runs: list[dict], path: Path) -> Path | None:
    """Fig. 3: per text, H_LM at capacity one-step (y) against cramming (x), with y = x, x/2, x/5;
    None when no source has both runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = information_pairs(runs)
    if not pairs:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 5))
    top = max(v for points in pairs.values() for _, x, y in points for v in (x, y)) * 1.1 or 1.0
    for divisor, style in ((1, "-"), (2, "--"), (5, ":")):
        ax.plot([0, top], [0, top / divisor], color="grey", lw=0.8, ls=style, label=f"y = x/{divisor}" if divisor > 1 else "y = x")
    for source, points in pairs.items():
        ax.scatter([x for _, x, _ in points], [y for _, _, y in points], label=f"{source} ({len(points)} texts)", alpha=0.8)
    s = next(r["settings"] for r in runs if r["settings"]["study"] == "capacity")
    c = next(r["settings"] for r in runs if r["settings"]["study"] == "cramming")
    ax.set(xlim=(0, top), ylim=(0, top), xlabel=f"autoregressive cramming, {c.get('mem', 1)} [mem] (nats)",
           ylabel="one-step, two proto-tokens (nats)",
           title=f"H_LM at capacity, per text — {s['model']}\none-step: {budget(s)}\ncramming: {budget(c)}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write(root: "str | Path") -> list[Path]:
    """Write report.md and the plots into ``root``."""
    root = Path(root)
    runs = load_runs(root)
    md = root / "report.md"
    written = [md, plot_accuracy(runs, root / "accuracy_vs_length.png")]
    text = (f"# Capacity report\n\nGenerated by `prototokens report {root}` from the records below it.\n\n"
            + table(runs) + "\n![accuracy against length](accuracy_vs_length.png)\n")
    crammed = cramming_table(runs)
    if crammed:
        text += ("\n## Cramming baseline: teacher-forced against free-running accuracy\n\n"
                 "Capacity counts free-running greedy accuracy; teacher forcing is what its optimiser sees.\n\n" + crammed)
    information = plot_information(runs, root / "information_one_step_vs_cramming.png")
    if information:
        written.append(information)
        text += "\n![H_LM at capacity, one-step against cramming](information_one_step_vs_cramming.png)\n"
    md.write_text(text)
    return written
