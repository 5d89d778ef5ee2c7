"""Reports from run folders: the Table 3 shape, accuracy against length, Fig. 3, and, where
records hold what their texts decode to, how a text degrades past its capacity.

Everything here is computed from the records alone, so committed tables and plots can be
regenerated from committed records; the one exception is the MiniLM cosine, computed here
from the stored texts when all-MiniLM-L6-v2 is installed ("-" when it is not).
report.html holds report.md's tables and plots, and each text at and beyond its capacity
beside its target, the wrong tokens marked.
"""

from __future__ import annotations

import html
import json
import re
import statistics
from collections import defaultdict
from pathlib import Path

from ..errors import PrototokensError
from ..metrics import mean_std
from ..progressive import standing
from ..recipe import label as recipe_label
from ..recipe import steps as recipe_steps
from ..records import read_records
from .common import THRESHOLD, counted_accuracy


def load_runs(root: "str | Path", required: bool = True) -> list[dict]:
    """Every run folder at or below ``root`` that holds a record: its settings and records, each
    record's accuracy the one it counts at (:func:`~.common.counted_accuracy`; a sweep that has
    finished no unit yet has nothing to report; refused if ``required`` and none has)."""
    root = Path(root)
    runs = [{"folder": p.parent, "settings": json.loads(p.read_text()),
             "records": [r | {"accuracy": counted_accuracy(r)} for r in read_records(p.parent / "records.jsonl")]}
            for p in sorted(root.rglob("run.json"))]
    runs = [r for r in runs if r["records"]]
    if not runs and required:
        raise PrototokensError(f"no run folders (with run.json and a record) under {root}")
    return runs


def capacities(records: list[dict], accuracy: str = "accuracy") -> dict[str, dict]:
    """Per text: the longest length passed (best seed >= threshold, by the record field
    ``accuracy``), H_LM there, its record, and the best accuracy and record at every length. A record of a
    group sharing m scores its group's worst at that length and seed."""
    worst = {}  # (group, length, seed) -> the group's worst accuracy: a shared m must serve every text
    for r in records:
        if r.get("group"):
            unit = (r["group"], r["length"], r["seed"])
            worst[unit] = min(worst.get(unit, 1.0), r[accuracy])
    best = defaultdict(dict)  # text -> length -> best record
    seeds = defaultdict(lambda: defaultdict(set))  # text -> length -> the seeds tried there
    for r in records:
        seeds[r["text"]][r["length"]].add(r["seed"])
        r = r | {accuracy: worst.get((r.get("group"), r["length"], r["seed"]), r[accuracy])}
        kept = best[r["text"]].get(r["length"])
        if kept is None or r[accuracy] > kept[accuracy]:
            best[r["text"]][r["length"]] = r
    out = {}
    for text, by_length in best.items():
        passed = [n for n, r in by_length.items() if r[accuracy] >= THRESHOLD]
        top = max(passed, default=0)
        out[text] = {"capacity": top, "h_lm_nats": by_length[top]["h_lm_nats"] if top else 0.0,
                     "record": by_length.get(top), "curve": {n: by_length[n][accuracy] for n in sorted(by_length)},
                     "by_length": dict(sorted(by_length.items())),
                     "seeds": {n: len(seeds[text][n]) for n in sorted(by_length)}}
    return out


def _mean_std(values: list[float]) -> str:
    return "{:.0f} ± {:.0f}".format(*mean_std(values)) if values else "-"


def label(settings: dict) -> str:
    study = "one-step" if settings["study"] == "capacity" else "cramming"
    sharing = "shared m" if settings.get("shared_m") else "per text"
    what = f"{settings['source']}, {study}, {sharing}" if study == "one-step" else f"{settings['source']}, {study}"
    return f"{settings['model']}: {what}"


def budget(settings: dict) -> str:
    """The recipe, steps and seeds a run used, as a plot names them."""
    return f"{recipe_label(settings['recipe'])}, {recipe_steps(settings['recipe'])}, {settings['seeds']} seed(s)"


def _method(settings: dict) -> tuple[str, str]:
    """A run's method and m, as the tables name them."""
    grown = ", progressive" if settings.get("search") == "progressive" else ""
    grown += ", stages polished" if settings.get("polished_stages") else ""
    if settings["study"] == "capacity":
        return f"one-step{grown}", "shared" if settings.get("shared_m") else "per text"
    return f"cramming ({settings.get('mem', 1)} mem{grown})", "-"


# Published capacities (C_tokens) to read each row against (reference/paper.md). On Pythia-160M and 410M:
# one-step from the paper's Table 3 (PG-19 books; "generated" is PG-19 continued by the model itself), with
# H_LM at capacity where it gives one; cramming with one vector from Kuratov et al. (PG-19, random text).
PYTHIA = {("one-step", "per text", "books"): "128 / 167 (388 / 409 nats)", ("one-step", "per text", "generated"): "128 / 181",
          ("one-step", "per text", "random"): "90 / 92", ("one-step", "shared", "books"): "45 / 32",
          ("one-step", "shared", "random"): "45 / 22", ("cramming", "-", "books"): "80 / 96",
          ("cramming", "-", "random"): "65 / 72"}
# On the models we run: progressive_cramming's exact greedy capacity of cramming (its protocol, its natural text),
# set beside our book rows.
THIS_MODEL = {("cramming", "books", "smollm2-135m"): "38.5 ± 14.1", ("cramming", "books", "gemma3-270m"): "71"}
PUBLISHED_NOTE = ("Published: on Pythia-160M / 410M, one-step rows from the paper's Table 3 (PG-19 books, the "
                  "model's own PG-19 continuations, random words; H_LM at capacity where the paper gives it) and "
                  "cramming rows with one [mem] from Kuratov et al. (PG-19, random text); on this model, "
                  "progressive_cramming's exact greedy capacity of cramming on its natural text. Every published "
                  "figure comes from other texts than ours.\n")


def published(settings: dict) -> tuple[str, str]:
    """The published capacities a run's row is read against: on Pythia-160M / 410M, and on its own model."""
    study = "one-step" if settings["study"] == "capacity" else "cramming"
    if study == "cramming" and settings.get("mem", 1) != 1:
        return "-", "-"
    m = ("shared" if settings.get("shared_m") else "per text") if study == "one-step" else "-"
    kind = settings["source"].partition(":")[0]  # books:austen is books
    return PYTHIA.get((study, m, kind), "-"), THIS_MODEL.get((study, kind, settings["model"]), "-")


def table(runs: list[dict], climbs: dict[Path, list[dict]]) -> str:
    """Markdown in the shape of the paper's Table 3: C_tokens and H_LM at capacity, mean ± std,
    beside the published figures for the same source and method (``climbs``: :func:`climbs_under_way`)."""
    lines = ["| source | method | m | texts | capacity C_tokens | H_LM at capacity (nats) | still climbing | model | recipe | seeds "
             "| published, Pythia-160M / 410M | published, this model |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        s, caps = run["settings"], capacities(run["records"]).values()
        method, m = _method(s)
        under_way = sum(len(texts) for path, texts in climbs.items() if path.parent == run["folder"])  # not yet recorded
        lines.append(f"| {s['source']} | {method} | {m} | {len(caps)} | {_mean_std([c['capacity'] for c in caps])} | "
                     f"{_mean_std([c['h_lm_nats'] for c in caps])} | {climbing(s, caps) + under_way} | {s['model']} | "
                     f"{recipe_label(s['recipe'])} ({recipe_steps(s['recipe'])}) | {s['seeds']} | "
                     + " | ".join(published(s)) + " |")
    return "\n".join(lines) + "\n\n" + PUBLISHED_NOTE


def climbing(settings: dict, caps) -> int:
    """Texts of a sweep that was stopped early, so that their capacity is only a lower bound: they
    passed the longest length they were tried at, short of the grid's end, or failed the next
    length with fewer than all their seeds, or (bisecting) failed no length just above their
    capacity. A progressive climb's records are written when it has ended, at its first stage
    short of exact, even where that stage clears the threshold (its texts under way are counted
    from their climb states by :func:`table`)."""
    if settings.get("search") == "progressive":
        return 0
    end, bisect = max(settings.get("grid") or [0]), settings.get("search") == "bisect"

    def unfinished(c):
        above = [n for n in c["curve"] if n > c["capacity"]]
        if not above:
            return c["capacity"] < end
        failed = min(above)
        return c["seeds"][failed] < settings["seeds"] or (bisect and failed > c["capacity"] + 1)

    return sum(map(unfinished, caps))


def cramming_table(runs: list[dict]) -> str:
    """The baseline's two accuracies side by side: teacher-forced (what its optimiser sees) and
    free-running greedy (what reconstruction gives), and Kuratov et al.'s gains at capacity."""
    lines = ["| source | method | records | mean teacher-forced acc | mean greedy acc | records >= 0.99 forced, < 0.99 greedy | "
             "capacity, teacher-forced | capacity, greedy | token gain at capacity | information gain at capacity (nats) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for run in (r for r in runs if r["settings"]["study"] == "cramming"):
        records = run["records"]
        forced, greedy = capacities(records, "teacher_forced_accuracy"), capacities(records).values()
        at_capacity = [c["record"] for c in greedy if c["record"]]
        lines.append(
            f"| {run['settings']['source']} | {_method(run['settings'])[0]} | {len(records)} | "
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


# The paper's one-step, per-text m rows on PG-19 as (nats a token, tokens) at capacity: H_LM / C_tokens, C_tokens.
PAPER_POINTS = {"Pythia-160M": (388 / 128, 128), "Pythia-410M": (409 / 167, 167)}
DENSITY = ("\n![tokens held against nats a token](capacity_vs_density.png)\n\nEach text at its capacity C: "
           "the tokens it holds against the nats a token of those C tokens (H_LM / C); along a grey curve a text "
           "holds the same information whatever its density. Stars: the paper's PG-19 rows.\n")


def plot_density(runs: list[dict], path: Path) -> Path | None:
    """Per text of each run with an m (or [mem]) per text: its capacity C against H_LM / C, with
    curves of constant H_LM and the paper's points; None when no text passed a length."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(run, [(c["h_lm_nats"] / c["capacity"], c["capacity"]) for c in capacities(run["records"]).values()
                     if c["capacity"]]) for run in runs if not run["settings"].get("shared_m")]
    panels = [(run, points) for run, points in panels if points]
    if not panels:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    xs = [x for _, points in panels for x, _ in points] + [x for x, _ in PAPER_POINTS.values()]
    low, high = min(xs) * 0.9, max(xs) * 1.1
    for nats in (200, 300, 400, 500):
        grid = [low + (high - low) * k / 50 for k in range(51)]
        ax.plot(grid, [nats / x for x in grid], color="grey", lw=0.7, ls="--")
        ax.annotate(f"{nats} nats", (high, nats / high), fontsize=7, color="grey", ha="right", va="bottom")
    markers = "osD^v<>ph"
    for k, (run, points) in enumerate(panels):
        s, (method, m) = run["settings"], _method(run["settings"])
        what = f"{method}, m {m}" if m != "-" else method
        ax.scatter(*zip(*points), marker=markers[k % len(markers)], color=plt.cm.tab20(k % 20), alpha=0.85,
                   label=f"{s['model']}: {s['source']}, {what}, {recipe_label(s['recipe'])}")
    for name, (x, y) in PAPER_POINTS.items():
        ax.scatter([x], [y], marker="*", s=160, color="black")
        ax.annotate(f"paper, {name}", (x, y), fontsize=7, xytext=(5, 3), textcoords="offset points")
    ax.set(xlim=(low, high), xlabel="nats a token at capacity (H_LM / C)", ylabel="capacity C (tokens)",
           title="Tokens held against the information they carry, per text at its capacity")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def best_per_text(runs: list[dict]) -> dict[str, dict[str, tuple[dict, dict]]]:
    """Per source and text: its capacity entry (:func:`capacities`) from whichever of ``runs``
    reached the longest length on it, with that run's settings."""
    best = defaultdict(dict)
    for r in runs:
        source = r["settings"]["source"]
        for text, c in capacities(r["records"]).items():
            if text not in best[source] or c["capacity"] > best[source][text][0]["capacity"]:
                best[source][text] = c, r["settings"]
    return best


def information_pairs(runs: list[dict]) -> tuple[dict[str, list[tuple[str, float, float]]], dict[str, tuple[list, list]]]:
    """Per source: (text, H_LM at cramming capacity, H_LM at one-step capacity) for the texts
    that both a per-text one-step run and a cramming run of that source hold, and the settings
    of the runs these come from. Where several runs of a method hold a text (Kuratov et al.'s
    recipe and progressive cramming, say), the text counts at the longest capacity any reached."""
    one_step = best_per_text([r for r in runs if r["settings"]["study"] == "capacity" and not r["settings"].get("shared_m")])
    crammed = best_per_text([r for r in runs if r["settings"]["study"] == "cramming"])
    pairs, compared = {}, {}
    for source in sorted(one_step.keys() & crammed.keys()):
        y, x = one_step[source], crammed[source]
        if texts := sorted(x.keys() & y.keys()):
            pairs[source] = [(t, x[t][0]["h_lm_nats"], y[t][0]["h_lm_nats"]) for t in texts]
            compared[source] = tuple([s for i, s in enumerate(settings) if s not in settings[:i]]
                                     for settings in ([y[t][1] for t in texts], [x[t][1] for t in texts]))
    return pairs, compared


def plot_information(runs: list[dict], path: Path) -> Path | None:
    """Fig. 3: per text, H_LM at capacity one-step (y) against cramming (x), with y = x, x/2, x/5;
    None when no source has both runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs, compared = information_pairs(runs)
    if not pairs:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 5))
    top = max(v for points in pairs.values() for _, x, y in points for v in (x, y)) * 1.1 or 1.0
    for divisor, style in ((1, "-"), (2, "--"), (5, ":")):
        ax.plot([0, top], [0, top / divisor], color="grey", lw=0.8, ls=style, label=f"y = x/{divisor}" if divisor > 1 else "y = x")
    for source, points in pairs.items():
        ax.scatter([x for _, x, _ in points], [y for _, _, y in points], label=f"{source} ({len(points)} texts)", alpha=0.8)
    s, c = next(iter(compared.values()))
    ax.set(xlim=(0, top), ylim=(0, top), xlabel=f"autoregressive cramming, {c[0].get('mem', 1)} [mem] (nats)",
           ylabel="one-step, two proto-tokens (nats)",
           title="\n".join([f"H_LM at capacity, per text — {s[0]['model']}", *(f"one-step: {b}" for b in map(budget, s)),
                             *(f"cramming: {b}" for b in map(budget, c))]))
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def reconstructions(run: dict) -> list[tuple[dict, int]]:
    """(record, its text's capacity) for each text's best seed at each length, where the record
    holds what its text decodes to (records written before that was recorded do not)."""
    return [(r, c["capacity"]) for c in capacities(run["records"]).values() for r in c["by_length"].values()
            if "wrong_positions" in r]


BANDS = ("below C", "at C", "C to 1.5 C", "beyond 1.5 C")


def band(n: int, capacity: int) -> str:
    """Where length ``n`` stands against a text's capacity (a text that passed no length is beyond)."""
    if n == capacity:
        return "at C"
    if capacity and n < capacity:
        return "below C"
    return "C to 1.5 C" if capacity and n <= 1.5 * capacity else "beyond 1.5 C"


def minilm_cosines(pairs: list[tuple[str, str]], batch: int = 64) -> list[float] | None:
    """all-MiniLM-L6-v2 cosine of each (decoded, target) pair; None when the model is not installed."""
    from ..similarity import minilm_embeddings

    out = []
    try:
        for i in range(0, len(pairs), batch):
            chunk = pairs[i: i + batch]
            x = minilm_embeddings([a for a, _ in chunk] + [b for _, b in chunk])
            out += (x[: len(chunk)] * x[len(chunk):]).sum(-1).tolist()
    except PrototokensError:
        return None
    return out


def _mean(values: list, digits: int) -> str:
    values = [v for v in values if v is not None]
    return f"{statistics.mean(values):.{digits}f}" if values else "-"


def quality_table(runs: list[dict]) -> str:
    """Per run and band of N against capacity: what the decoded texts read like beside their
    targets ("" when no record holds it)."""
    rows = [(k, r, band(r["length"], capacity)) for k, run in enumerate(runs) for r, capacity in reconstructions(run)]
    if not rows:
        return ""
    cosines = minilm_cosines([(r["decoded_text"], r["target_text"]) for _, r, _ in rows]) or [None] * len(rows)
    groups = defaultdict(list)
    for (k, r, b), cosine in zip(rows, cosines):
        groups[k, b].append((r, cosine))
    lines = ["| source | method | m | model | recipe | N against capacity C | records | token accuracy | first error at (share of N) | "
             "char edit distance | chrF | H_LM decoded (nats/token) | H_LM target (nats/token) | MiniLM cosine |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (k, b), group in sorted(groups.items(), key=lambda item: (item[0][0], BANDS.index(item[0][1]))):
        s, records = runs[k]["settings"], [r for r, _ in group]
        first = [min(r["wrong_positions"]) / r["length"] for r in records if r["wrong_positions"]]
        lines.append(f"| {s['source']} | {' | '.join(_method(s))} | {s['model']} | {recipe_label(s['recipe'])} | {b} | "
                     f"{len(records)} | {_mean([r['accuracy'] for r in records], 3)} | "
                     f"{_mean(first, 2)} | {_mean([r['edit_distance'] for r in records], 3)} | {_mean([r['chrf'] for r in records], 1)} | "
                     f"{_mean([r['decoded_h_lm_nats_per_token'] for r in records], 2)} | "
                     f"{_mean([r['h_lm_nats'] / r['length'] for r in records], 2)} | {_mean([c for _, c in group], 3)} |")
    return "\n".join(lines) + "\n"


def error_profile(n: int, wrongs: list[list[int]], bins: int = 10) -> tuple[list[float], list[float]]:
    """Error rate of texts of length ``n`` (their wrong positions ``wrongs``) in ``bins`` bins of
    relative position i / n: (bin centres, rates), bins that no position falls in left out."""
    total, wrong = [0] * bins, [0] * bins
    for i in range(n):
        total[i * bins // n] += len(wrongs)
    for i in (i for positions in wrongs for i in positions):
        wrong[i * bins // n] += 1
    kept = [b for b in range(bins) if total[b]]
    return [(b + 0.5) / bins for b in kept], [wrong[b] / total[b] for b in kept]


def plot_error_positions(runs: list[dict], path: Path) -> Path | None:
    """Error rate against relative position, one panel per run, one line per length at which some
    text errs (each text's best seed); None when no record holds its wrong positions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(run, reconstructions(run)) for run in runs]
    panels = [(run, rows) for run, rows in panels if any(r["wrong_positions"] for r, _ in rows)]
    if not panels:
        return None
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 1.2 + 2.6 * len(panels)), sharex=True, squeeze=False)
    for ax, (run, rows) in zip(axes[:, 0], panels):
        by_length = defaultdict(list)
        for r, _ in rows:
            by_length[r["length"]].append(r["wrong_positions"])
        lengths = [n for n, wrongs in sorted(by_length.items()) if any(wrongs)]
        for n, colour in zip(lengths, plt.cm.viridis([k / max(len(lengths) - 1, 1) * 0.9 for k in range(len(lengths))])):
            ax.plot(*error_profile(n, by_length[n]), marker=".", color=colour, label=f"N = {n} ({len(by_length[n])} texts)")
        ax.set(ylabel="error rate", ylim=(0, 1.02), title=f"{label(run['settings'])} ({budget(run['settings'])})")
        ax.legend(fontsize=7, ncol=2)
    axes[-1, 0].set(xlabel="relative position i / N (10 bins)", xlim=(0, 1))
    fig.suptitle(f"Where the wrong tokens fall — {runs[0]['settings']['model']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


QUALITY = """
## Beyond token accuracy

Each text's best seed at each length N, grouped by N against the text's capacity C (a text that passed no length is \
beyond). Edit distance: characters, normalised (0: the same, 1: nothing alike; rapidfuzz). chrF: sacrebleu's, 0-100. \
First error: where a text's first wrong token falls, as a share of N (texts with one). H_LM in nats per token, of the \
decoded text and of the target. MiniLM: cosine of the two texts' all-MiniLM-L6-v2 embeddings ("-": not installed). \
report.html sets each decoded text at and beyond capacity beside its target, the wrong tokens marked.

"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Capacity report</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #bbb; padding: 0.25em 0.5em; vertical-align: top; }}
td.text {{ font-family: monospace; white-space: pre-wrap; width: 40em; }}
mark {{ background: #ffb0b0; }}
img {{ max-width: 100%; }}
</style>
</head>
<body>
{body}
</body>
</html>
"""


def _inline(text: str) -> str:
    """Escaped, with `code` as <code>."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))


def _html_table(lines: list[str]) -> str:
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    head = "<tr>" + "".join(f"<th>{_inline(c)}</th>" for c in rows[0]) + "</tr>\n"
    body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>\n" for row in rows[2:])
    return f"<table>\n{head}{body}</table>"


def markdown_html(md: str) -> str:
    """report.md as HTML: the headings, tables, images and one-line paragraphs it is made of."""
    out, table = [], []
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            table.append(line)
            continue
        if table:
            out.append(_html_table(table))
            table = []
        image = re.fullmatch(r"!\[(.*)\]\((.*)\)", line)
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
        elif image:
            out.append(f'<p><img src="{html.escape(image[2])}" alt="{html.escape(image[1])}"></p>')
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
    return "\n".join(out)


def marked(pieces: list[str], wrong: set[int]) -> str:
    """The token pieces as escaped HTML, those at ``wrong`` positions in <mark>."""
    return "".join(f"<mark>{html.escape(p)}</mark>" if i in wrong else html.escape(p) for i, p in enumerate(pieces))


def reconstructions_html(runs: list[dict]) -> str:
    """Per run, each text at and beyond its capacity C: its target beside what it decodes to,
    the wrong tokens marked in both."""
    parts = []
    for run in runs:
        rows = [(r, c) for r, c in reconstructions(run) if r["length"] >= c]
        if not rows:
            continue
        parts += [f"<h3>{html.escape(label(run['settings']))}</h3>",
                  "<table>\n<tr><th>text</th><th>N</th><th>C</th><th>accuracy</th><th>edit distance</th><th>chrF</th>"
                  "<th>target</th><th>decoded</th></tr>"]
        for r, c in rows:
            wrong = set(r["wrong_positions"])
            parts.append(f"<tr><td>{html.escape(r['text'])}</td><td>{r['length']}</td><td>{c}</td><td>{r['accuracy']:.3f}</td>"
                         f"<td>{r['edit_distance']:.3f}</td><td>{r['chrf']:.1f}</td>"
                         f'<td class="text">{marked(r["target_pieces"], wrong)}</td><td class="text">{marked(r["decoded_pieces"], wrong)}</td></tr>')
        parts.append("</table>")
    if not parts:
        return "<p>No record here holds the text it decodes to (they were written before that was recorded).</p>"
    return ("<h2>Reconstructions at and beyond capacity</h2>\n<p>Each text's best seed at each length N from its capacity C "
            "on; wrong tokens are <mark>marked</mark> in the target and in what was decoded.</p>\n" + "\n".join(parts))


def climbs_under_way(root: Path) -> dict[Path, list[dict]]:
    """Every progressive climb under way below ``root`` (its climb-*.safetensors state): where
    each of its texts stands (:func:`~prototokens.progressive.standing`)."""
    return {path: standing(path) for path in sorted(root.rglob("climb-*.safetensors"))}


def climbs_table(root: Path, climbs: dict[Path, list[dict]]) -> str:
    """Markdown: each text of ``climbs`` (:func:`climbs_under_way`), where it stands; "" when none is."""
    lines = []
    for path, texts in climbs.items():
        settings = path.parent / "run.json"
        s = json.loads(settings.read_text()) if settings.is_file() else {}
        where = f"{path.parent.relative_to(root)}" if path.parent != root else "."
        for k, t in enumerate(texts):
            lines.append(f"| {where} | {s.get('model', '-')} | {s.get('source', '-')} | {_method(s)[0] if s else '-'} | "
                         f"{t['name'] or f'{path.name} #{k}'} | {t['passed']} | "
                         f"{'ended' if t['stage'] is None else t['stage']} | {t['used']} / {t['max_steps']} |")
    if not lines:
        return ""
    return ("\n## Climbs under way\n\nProgressive climbs not yet recorded, as their states last kept them: each text's "
            "longest exact prefix so far (a lower bound on its capacity), the stage it climbs at (\"ended\": it waits for "
            "its batch), and the updates it has spent of the most it may.\n\n"
            "| folder | model | source | method | text | exact to (tokens) | stage under way | updates |\n"
            "|---|---|---|---|---|---|---|---|\n" + "\n".join(lines) + "\n")


def write(root: "str | Path") -> list[Path]:
    """Write report.md, its plots and report.html into ``root``: from its records, and where
    progressive climbs are under way, where they stand."""
    root = Path(root)
    climbs = climbs_under_way(root)
    runs = load_runs(root, required=not climbs)
    md = root / "report.md"
    text = (f"# Capacity report\n\nGenerated by `prototokens report {root}` from the records below it. A length "
            "counts as reconstructed at accuracy >= 0.99 in what its vectors write with the model as the run loaded "
            "it (float32 unless it said otherwise; for cramming, by free-running greedy generation) and, for "
            "one-step, in the optimiser's own pass as well (in the dtype its steps ran in).\n\n")
    written = [md]
    if runs:
        sections, plots = run_sections(runs, climbs, root)
        text, written = text + sections, written + plots
    text += climbs_table(root, climbs)
    md.write_text(text)
    page = root / "report.html"
    page.write_text(PAGE.format(body=markdown_html(text) + "\n" + (reconstructions_html(runs) if runs else "")))
    return [*written, page]


def run_sections(runs: list[dict], climbs: dict[Path, list[dict]], root: Path) -> tuple[str, list[Path]]:
    """The report's tables and plots from the records of ``runs`` (plots written into ``root``)."""
    written = [plot_accuracy(runs, root / "accuracy_vs_length.png")]
    text = table(runs, climbs) + "\n![accuracy against length](accuracy_vs_length.png)\n"
    density = plot_density(runs, root / "capacity_vs_density.png")
    if density:
        written.append(density)
        text += DENSITY
    crammed = cramming_table(runs)
    if crammed:
        text += ("\n## Cramming baseline: teacher-forced against free-running accuracy\n\n"
                 "Capacity counts free-running greedy accuracy; teacher forcing is what its optimiser sees.\n\n" + crammed)
    information = plot_information(runs, root / "information_one_step_vs_cramming.png")
    if information:
        written.append(information)
        text += "\n![H_LM at capacity, one-step against cramming](information_one_step_vs_cramming.png)\n"
    quality = quality_table(runs)
    if quality:
        text += QUALITY + quality
        positions = plot_error_positions(runs, root / "error_positions.png")
        if positions:
            written.append(positions)
            text += "\n![error rate against relative position](error_positions.png)\n"
    return text, written
