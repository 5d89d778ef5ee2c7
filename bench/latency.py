"""Encode latency in fp32-step equivalents, the measure of the speed target: each text encoded
alone from the CLI (`prototokens encode TEXT -o F`, default threads), wall time from the
command's start to its saved file, divided by the time of one fp32 forward and backward of one
text at the same N with the same threads, measured in this run just before and after each
encode (median of 5 after a warm-up). Each file is then decoded in float32 and in bfloat16.

    .venv/bin/python bench/latency.py [--n 64] [--texts books:3,generated:3,heldout:3] [--seed 0]
                                      [--recipe fast] [--throughput 1,4,8] [--device cpu] [--out bench/results]

`heldout` are passages written for this benchmark, never part of a data source here; `--seed`
samples other passages of the sources (0 gave the texts every earlier run used).
`--throughput` also encodes all the texts in one CLI call per batch size (`--jsonl`,
`--batch-size B`) and reports texts per hour (its file kept beside the JSON); `--recipes ""` measures only that. A recipe may carry CLI options after a colon,
e.g. `paper:--layout em --steps 2000`. After every row the JSON is written and the text's proto file
copied beside it; run the same command
again after a stop and it keeps the rows it finds there and measures only the rest. Each row names
the recipe version it ran (``fast v10``), and a run refuses to add rows to those of a preset that
has moved on since (run ``fast@9`` for more rows of ``fast`` v9).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import prototokens as pt
from prototokens.data import sample_passages
from prototokens.optimize import evaluate
from prototokens.recipe import get_recipe
from prototokens.recipe import label as label_of
from step import step_seconds

HELDOUT = [
    "The harbour master kept a ledger of every ship that entered the bay, noting its cargo, its crew and "
    "the weather on the morning it arrived. Over forty years the ledger grew into six volumes, and the "
    "town library now keeps them in a glass case beside the old brass telescope he used.",
    "Glaciers move because ice under pressure behaves like a very slow liquid. Near the bed, meltwater "
    "lubricates the contact with rock, and the whole mass slides downhill a few centimetres a day, "
    "grinding the valley floor into the fine grey flour that colours mountain rivers in summer.",
    "When the bakery on the corner closed, the neighbours organised a rota to keep its ovens warm "
    "through the winter. Each family baked on a different night, and by spring the street had learned "
    "twelve kinds of bread, a sourdough starter had been named, and nobody wanted the shop to reopen.",
]


def texts_for(lm, spec: str, n: int, seed: int = 0) -> list[tuple[str, str]]:
    """(name, text) pairs: each source's passages (sampled with ``seed``) cut to n tokens and detokenised."""
    out = []
    for part in spec.split(","):
        source, _, k = part.rpartition(":")
        if source == "heldout":
            ids = [lm.tokenize(t)[:n] for t in HELDOUT[: int(k)]]
        else:
            ids = [p.target_ids for p in sample_passages(lm, source, int(k), n, seed=seed)]
        out += [(f"{source}-{i}", lm.detokenize(t)) for i, t in enumerate(ids)]
    return out


def fp32_step_seconds(lm, n: int, repeats: int = 5) -> float:
    """Median time of one forward and backward of one text of n tokens, default layout."""
    layout = pt.get_layout(pt.layout.DEFAULT_LAYOUT)
    times = [step_seconds(lm, layout, n, 1) for _ in range(repeats + 1)]
    return statistics.median(times[1:])  # the first is a warm-up


def cli(*args) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "prototokens.cli", *map(str, args)], capture_output=True, text=True)
    return time.perf_counter() - started, done


def decodes(models: dict, path: Path) -> dict:
    """Per dtype: exact decode of every text, and the smallest margin of the right logit."""
    out = {}
    for dtype, lm in models.items():
        proto = pt.load(path, lm)
        layout = pt.get_layout(proto.layout)
        e, m = (torch.stack(v).to(lm.device) for v in zip(*(proto.vectors(i) for i in range(len(proto)))))
        with torch.no_grad():
            scores = evaluate(lm, layout, {"e": e, "m": m}, [t.target_ids for t in proto.texts])
        out[dtype] = {"exact": [a == 1.0 for a in scores.accuracy.tolist()], "margin": scores.margin.tolist()}
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--texts", default="books:3,generated:3,heldout:3")
    p.add_argument("--seed", type=int, default=0, help="which passages of each source to sample")
    p.add_argument("--recipes", default="fast", help="comma-separated; RECIPE:CLI OPTIONS; empty: no per-text rows")
    p.add_argument("--throughput", default="", help="batch sizes for texts per hour, e.g. 1,4,8")
    p.add_argument("--device", default="cpu", help="where the CLI encodes and the fp32 step is timed (cpu, cuda, ...)")
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    args = p.parse_args()
    models = {"float32": pt.load_model(device=args.device)}
    models["bfloat16"] = models["float32"].in_dtype("bfloat16")
    texts = texts_for(models["float32"], args.texts, args.n, args.seed)
    print(f"N = {args.n}, {len(texts)} texts, {models['float32'].device}, torch threads {torch.get_num_threads()}", flush=True)
    rows, throughput, work = [], [], Path(tempfile.mkdtemp())
    args.out.mkdir(parents=True, exist_ok=True)
    recipes = [r for r in args.recipes.split(",") if r]
    out = args.out / (f"latency-n{args.n}-{args.recipes.split(':')[0].replace(',', '-')}.json" if recipes
                      else f"throughput-n{args.n}.json")
    if out.exists():  # resume: keep what an earlier run of the same measurement finished
        earlier = json.loads(out.read_text())
        keys = ("n", "texts", "recipes", "seed")
        same = {k: earlier["args"].get(k, 0) for k in keys} == {k: getattr(args, k) for k in keys}
        if not same or earlier["fingerprint"] != models["float32"].fingerprint:
            raise SystemExit(f"{out} holds another measurement; move it away or pass another --out")
        rows, throughput = earlier["rows"], earlier["throughput"]
        for recipe in recipes:  # a preset that moved on since (fast v9 -> v10) must not extend its rows
            now = get_recipe(recipe.partition(":")[0]).label
            was = {r["recipe_label"].replace("+custom ", " ") for r in rows  # options after a colon mark it +custom
                   if r["recipe"] == recipe and "recipe_label" in r}
            if was - {now}:
                raise SystemExit(f"{out} holds rows of {recipe!r} as {', '.join(sorted(was))}, which is now {now}; "
                                 f"name the version (e.g. {recipe.partition(':')[0]}@{min(was).split(' v')[-1]}) "
                                 "in a new --out")
        print(f"resuming {out}: {len(rows)} texts and {len(throughput)} batch sizes done", flush=True)

    def save():  # after every row, so a stopped run keeps what it measured
        out.write_text(json.dumps({"model": models["float32"].name, "fingerprint": models["float32"].fingerprint,
                                   "device": str(models["float32"].device),
                                   "threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                                   "args": vars(args) | {"out": str(args.out)}, "rows": rows, "throughput": throughput}, indent=1))
    for recipe in recipes:
        name, _, options = recipe.partition(":")
        for label, text in texts:
            if any(r["recipe"] == recipe and r["text"] == label for r in rows):
                continue
            before = fp32_step_seconds(models["float32"], args.n)
            path = work / f"{name}-{label}.proto.safetensors"
            wall, done = cli("encode", text, "-o", path, "--recipe", name, "--device", args.device, "--force", "-q", *options.split())
            step = (before + fp32_step_seconds(models["float32"], args.n)) / 2
            if done.returncode not in (0, 1):
                raise SystemExit(f"encode failed: {done.stderr.strip()}")
            proto = pt.load(path)
            record = proto.texts[0]
            shutil.copy(path, args.out / path.name)  # kept beside the JSON, to decode and verify later
            check = decodes(models, path)
            row = {"recipe": recipe, "recipe_label": label_of(proto.recipe), "text": label, "n_tokens": record.n_tokens, "status": record.status,
                   "accuracy": record.accuracy, "steps": record.total_steps, "seed": record.seed, "seed_steps": record.steps,
                   "wall_s": wall, "optimize_s": record.elapsed, "fp32_step_s": step, "fp32_steps": wall / step,
                   "decodes": {d: c["exact"][0] for d, c in check.items()},
                   "margin": {d: c["margin"][0] for d, c in check.items()}}
            rows.append(row)
            save()
            print(f"{recipe:>12} {label:>12} {row['status']:>8} {row['accuracy']:.3f} {row['steps']:>5} steps {wall:7.1f} s "
                  f"= {row['fp32_steps']:6.0f} fp32 steps; exact fp32 {row['decodes']['float32']}, "
                  f"bf16 {row['decodes']['bfloat16']} (margins {row['margin']['float32']:.2f}, "
                  f"{row['margin']['bfloat16']:.2f})", flush=True)
        mine = [r for r in rows if r["recipe"] == recipe]
        solved = [r for r in mine if r["status"] == "solved" and all(r["decodes"].values())]
        ranked = sorted((r["status"] != "solved", r["fp32_steps"]) for r in mine)
        middle = ranked[(len(ranked) - 1) // 2]
        print(f"{recipe}: {len(solved)}/{len(mine)} solved and exact in both dtypes; median "
              f"{'>' if middle[0] else ''}{middle[1]:.0f} fp32-step equivalents", flush=True)
    jsonl = work / "texts.jsonl"
    jsonl.write_text("".join(json.dumps(t) + "\n" for _, t in texts))
    for batch in [int(b) for b in args.throughput.split(",") if b]:
        if any(t["batch"] == batch for t in throughput):
            continue
        path = work / f"batch{batch}.proto.safetensors"
        wall, done = cli("encode", "--jsonl", jsonl, "-o", path, "--batch-size", batch, "--device", args.device, "--force", "-q")
        shutil.copy(path, args.out / path.name)
        proto = pt.load(path)
        solved = sum(t.status == "solved" for t in proto.texts)
        throughput.append({"batch": batch, "recipe": label_of(proto.recipe), "texts": len(texts), "solved": solved, "wall_s": wall,
                           "texts_per_hour": 3600 * solved / wall})
        save()
        print(f"batch {batch}: {solved}/{len(texts)} solved in {wall:.0f} s, {3600 * solved / wall:.0f} texts/hour", flush=True)
    save()
    print(f"wrote {out}")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
