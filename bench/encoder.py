"""Learned encoders against the default optimiser on held-out passages, side by side in one run.

    .venv/bin/python bench/encoder.py ENC [ENC ...] [--lengths 16,32,64] [--texts 10] [--steps 1000]
                                      [--restarts 1] [--seed 0] [--out runs/encoder-eval]

ENC is an encoder's folder or file (``prototokens encoder train``); pass a ``--predict none``
encoder for the text-independent floor, and snapshots (ENC/snapshots/step-S.safetensors) for a
curve against training time. The passages (``--texts``, seeded) come from the first encoder's
held-out texts; an encoder that trained on any of them is refused. At each length N the target
is a passage's first N tokens, one text at a time (so wall times are per text).

- zero-shot: token accuracy of one forward pass from each encoder's output, against the default
  optimiser's kept state after the same wall time (the step its mean seconds per step reaches
  within the encoder's time to predict, read from its trajectory);
- warm start: steps (over all seeds) and wall seconds (prediction included) to 100 % from each
  encoder's output against the default start, with the same recipe and budget (``--steps`` a
  seed, ``--restarts`` seeds), and the share solved. A failure ranks above every success, so a
  median is a lower bound (">") when half or more failed (as in bench/encode.py).

Records go to OUT/records.jsonl as each (N, method, text) finishes; a rerun resumes. Writes
OUT/encoder-eval.json, encoder-eval.md and encoder-eval.png.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import prototokens as pt
from encode import median, spread  # bench/encode.py
from prototokens import encoder
from prototokens.data import sample_passages
from prototokens.layout import get_layout
from prototokens.optimize import evaluate
from prototokens.records import RunFolder, key_of

DEFAULT = "default start"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("encoders", nargs="+", type=Path)
    p.add_argument("--model", default=pt.DEFAULT_MODEL)
    p.add_argument("--device")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--lengths", default="16,32,64")
    p.add_argument("--texts", type=int, default=10)
    p.add_argument("--steps", type=int, default=1000, help="steps a seed, the same for every start")
    p.add_argument("--restarts", type=int, default=1, help="seeds a text (later seeds start from the recipe's init)")
    p.add_argument("--recipe", default="fast")
    p.add_argument("--seed", type=int, default=0, help="seed of the passage sample")
    p.add_argument("--out", type=Path, default=Path("runs/encoder-eval"))
    args = p.parse_args()
    lm = pt.load_model(args.model, device=args.device, dtype=args.dtype)
    encoders = {str(path): encoder.load(path, lm) for path in args.encoders}
    first = next(iter(encoders.values())).meta["training"]
    for name, enc in encoders.items():
        if seen := set(first["held_out_texts"]) & set(enc.meta["training"]["train_texts"]):
            raise SystemExit(f"{name} trained on {', '.join(sorted(seen))}, held out by the first encoder: evaluate it apart")
    lengths = [int(x) for x in args.lengths.split(",")]
    recipe = pt.get_recipe(args.recipe).with_overrides(max_steps=args.steps)
    passages = sample_passages(lm, first["source"], args.texts, max(lengths), args.seed, 0, only=first["held_out_texts"])
    run = RunFolder(args.out, {"model": lm.name, "fingerprint": lm.fingerprint, "encoders": {k: e.digest for k, e in encoders.items()},
                               "texts": [f"{q.text_name}@{q.char_offset}" for q in passages], "lengths": lengths,
                               "recipe": recipe.to_dict(), "restarts": args.restarts, "dtype": args.dtype})
    print(f"{lm.name} on {lm.device} ({lm.dtype}), torch threads {torch.get_num_threads()}, {len(passages)} passages "
          f"from {len(set(q.text_name for q in passages))} held-out texts, {args.steps} steps x {args.restarts} seed(s)")
    for n in lengths:
        for i, q in enumerate(passages):
            target = q.target_ids[:n]
            for method, enc in [(DEFAULT, None), *encoders.items()]:
                if key_of(n, method, i) in run.done:
                    continue
                record = measure(lm, enc, target, recipe, args.restarts)
                run.append(record | {"key": key_of(n, method, i), "n_tokens": n, "method": method, "text": i,
                                     "text_name": q.text_name, "encoder_seconds": enc and enc.meta["training"]["seconds"],
                                     "predict": enc and enc.config.predict})
                print(f"N={n} text {i} {method}: zero-shot {record['zero_shot']:.3f}, "
                      f"{'solved' if record['solved'] else 'unsolved'} in {record['steps']} steps, {record['seconds']:.1f} s", flush=True)
    rows = summarise(run.records, lengths, list(encoders))
    (args.out / "encoder-eval.json").write_text(json.dumps({"settings": run.settings, "rows": rows}, indent=1))
    table = markdown(rows, run.settings)
    (args.out / "encoder-eval.md").write_text(table)
    plot(rows, args.out / "encoder-eval.png")
    print(table + f"\nwrote {args.out}/encoder-eval.json, .md, .png")


def measure(lm, enc, target, recipe, restarts) -> dict:
    """One text from one start: zero-shot accuracy, then the optimiser from there."""
    began = time.perf_counter()
    guess = enc.predict(lm, [target]) if enc else None
    predict_seconds = time.perf_counter() - began
    if guess is not None:
        zero = float(evaluate(lm, get_layout(enc.meta["layout"]), guess, [target]).accuracy[0])
    fit = pt.optimize(lm, [target], recipe=recipe, restarts=restarts, start=guess, trajectory=enc is None, progress=False)
    o = fit.outcomes[0]
    trajectory = [t.accuracy for t in fit.trajectory[0]] if enc is None else []
    return {"zero_shot": zero if guess is not None else trajectory[0], "predict_seconds": predict_seconds,
            "solved": o.solved, "steps": o.total_steps, "seconds": predict_seconds + (o.elapsed if o.solved else fit.seconds),
            "step_seconds": fit.seconds / max(1, len(trajectory)) if enc is None else None, "trajectory": trajectory}


def summarise(records: list[dict], lengths: list[int], encoders: list[str]) -> list[dict]:
    """Per (N, method): the figures of the table."""
    rows = []
    for n in lengths:
        default = {r["text"]: r for r in records if r["n_tokens"] == n and r["method"] == DEFAULT}
        base = None
        for method in [DEFAULT, *encoders]:
            mine = sorted((r for r in records if r["n_tokens"] == n and r["method"] == method), key=lambda r: r["text"])
            if not mine:
                continue
            steps = [(r["steps"], not r["solved"]) for r in mine]
            seconds = [(r["seconds"], not r["solved"]) for r in mine]
            row = {"n_tokens": n, "method": method, "texts": len(mine), "solved": sum(r["solved"] for r in mine),
                   "zero_shot": statistics.mean(r["zero_shot"] for r in mine), "steps": spread(steps), "seconds": spread(seconds),
                   "median_steps": median(steps), "encoder_seconds": mine[0]["encoder_seconds"], "predict": mine[0]["predict"]}
            if method == DEFAULT:
                base = row["median_steps"]
            else:  # the default's kept accuracy after the wall time this encoder took to predict
                row["default_same_time"] = statistics.mean(
                    max(default[r["text"]]["trajectory"][: int(r["predict_seconds"] / default[r["text"]]["step_seconds"]) + 1])
                    for r in mine if r["text"] in default)
                (value, bound), (b, b_bound) = row["median_steps"], base
                row["fewer_steps"] = "-" if bound and b_bound else ("<" if bound else ">" if b_bound else "") + f"{b / max(value, 1):.1f}x"
            rows.append(row)
    return rows


def markdown(rows: list[dict], settings: dict) -> str:
    """The table; with 0 steps (zero-shot only) no optimiser ran, so only the zero-shot columns."""
    warm = settings["recipe"]["max_steps"] > 0
    lines = [f"# Learned encoders against the default start ({settings['model']}, {len(settings['texts'])} held-out passages)", "",
             (f"Recipe {settings['recipe']['name']} v{settings['recipe']['version']}, {settings['recipe']['max_steps']} steps x "
              f"{settings['restarts']} seed(s). " if warm else "Zero-shot only (0 steps: no optimiser ran). ")
             + "Zero-shot: token accuracy of one forward pass from the start alone"
             + ("; the default's is its kept state after the same wall time as the encoder's prediction. Steps and seconds to "
                "100 %: median [min-max of the solved]; '>' a lower bound (half or more unsolved)." if warm else "."), "",
             "| N | start | encoder trained (s) | zero-shot accuracy |" + (" default after the same time | solved | steps to 100 % | "
                                                                          "seconds to 100 % | fewer steps than default |" if warm else ""),
             "|---|---|---|---|" + ("---|" * 5 if warm else "")]
    for r in rows:
        trained = "-" if r["encoder_seconds"] is None else f"{r['encoder_seconds']:.0f}"
        same_time = f"{r['default_same_time']:.3f}" if "default_same_time" in r else "-"
        lines.append(f"| {r['n_tokens']} | {r['method']} | {trained} | {r['zero_shot']:.3f} |" + (
            f" {same_time} | {r['solved']}/{r['texts']} | {r['steps']} | {r['seconds']} | {r.get('fewer_steps', '-')} |" if warm else ""))
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> Path:
    """Zero-shot accuracy and median steps to 100 % against N per start; both against training time per N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    lengths = sorted({r["n_tokens"] for r in rows})
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        label = method if method == DEFAULT else f"{Path(method).name} ({mine[0]['predict']})"
        line, = axes[0].plot([r["n_tokens"] for r in mine], [r["zero_shot"] for r in mine], "o-", label=label)
        solved = [r for r in mine if not r["median_steps"][1]]
        bounds = [r for r in mine if r["median_steps"][1]]
        axes[1].plot([r["n_tokens"] for r in solved], [r["median_steps"][0] for r in solved], "o-", color=line.get_color(), label=label)
        axes[1].plot([r["n_tokens"] for r in bounds], [r["median_steps"][0] for r in bounds], "^", mfc="none", color=line.get_color())
    axes[0].set(xlabel="N (tokens)", ylabel="zero-shot token accuracy", ylim=(0, 1.02), title="one pass from the start alone")
    warm = any(r["median_steps"][0] > 0 for r in rows)
    axes[1].set(xlabel="N (tokens)", ylabel="median steps to 100 %", yscale="log" if warm else "linear",
                title="warm start (open triangle: a lower bound)" if warm else "warm start: not run (0 steps)")
    for variant in dict.fromkeys(r["predict"] for r in rows if r["predict"]):
        for n in lengths:  # the snapshots of one variant make its curve
            mine = sorted((r for r in rows if r["n_tokens"] == n and r["predict"] == variant), key=lambda r: r["encoder_seconds"])
            axes[2].plot([r["encoder_seconds"] for r in mine], [r["zero_shot"] for r in mine], "o-", label=f"{variant}, N={n}")
    axes[2].set(xlabel="encoder training time (s)", ylabel="zero-shot token accuracy", ylim=(0, 1.02), title="against training time")
    for ax in axes[:2]:
        ax.set_xscale("log")
        ax.set_xticks(lengths, [str(n) for n in lengths])
        ax.minorticks_off()
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
