"""Cost of one optimiser step (forward + backward over the layout) in fp32 against other ways
of computing it, side by side: the variants alternate repetition by repetition, so machine noise
hits all of them. Each variant runs the steps as the optimiser does (``FrozenLM.for_steps``; on a
CPU, bf16 attention in float32). Variants: a dtype (``bfloat16``: bf16 weights; on a CPU without
bf16 units its linears summed in float32, ``bfloat16-torch`` there: PyTorch's own bf16 linears), or DTYPE:BACKEND[:MODE] under
torch.compile as the CLI's --compile runs the steps (``compiled``: float32:inductor; dynamic shapes,
so one compile serves every batch above 1; its time is reported apart, as the first step's). Each row also gives the cost of a batch
against one text in fp32, the price of encoding several starts of a text at once.

    .venv/bin/python bench/step.py [--lengths 32,64,128] [--batches 1,4] [--repeats 5] [--variants bfloat16,compiled]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import prototokens as pt
from prototokens.model import Bf16Linear
from prototokens.optimize import evaluate


def step_seconds(lm, layout, n: int, batch: int) -> float:
    e = torch.randn(batch, lm.d_model, device=lm.device, requires_grad=True)
    m = torch.randn(batch, lm.d_model, device=lm.device, requires_grad=True)
    targets = [[5 + i for i in range(n)]] * batch
    sync = torch.cuda.synchronize if lm.device.type == "cuda" else lambda: None
    sync()
    started = time.perf_counter()
    evaluate(lm, layout, {"e": e * 0.1, "m": m * 0.1}, targets, 4.0).objective.sum().backward()
    sync()
    return time.perf_counter() - started


def torch_bf16(name: str, device: str = "cpu"):
    """The model in bf16 with PyTorch's own bf16 linears, not :class:`Bf16Linear`."""
    lm = pt.load_model(name, device=device, dtype="bfloat16")
    for module in lm.model.modules():
        if isinstance(module, Bf16Linear):
            module.__class__ = torch.nn.Linear
            del module.weight32
    return lm


def variant(name: str, fp32):
    """The model a variant computes with: DTYPE, or DTYPE:BACKEND[:MODE] compiled as the CLI's
    --compile does (``compiled``: float32:inductor)."""
    if name == "bfloat16-torch":
        return torch_bf16(fp32.name, str(fp32.device)).for_steps()
    dtype, _, compile = ("float32:inductor" if name == "compiled" else name).partition(":")
    return pt.load_model(fp32.name, device=str(fp32.device), dtype=dtype, compile=compile or None).for_steps()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lengths", default="32,64,128")
    p.add_argument("--batches", default="1,4")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--variants", default="bfloat16", help="compared with float32: DTYPE or DTYPE:BACKEND[:MODE], "
                   "e.g. bfloat16,compiled,bfloat16:inductor (comma-separated)")
    p.add_argument("--model", default=pt.DEFAULT_MODEL)
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda if available)")
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    args = p.parse_args()
    fp32 = pt.load_model(args.model, device=args.device, dtype="float32")
    models = {"float32": fp32} | {name: variant(name, fp32) for name in args.variants.split(",")}
    layout = pt.get_layout(pt.layout.DEFAULT_LAYOUT)
    rows, base, warmup = [], {}, {}
    print(f"{fp32.device}, torch threads {torch.get_num_threads()}; medians of {args.repeats} after a warm-up; "
          "speed-up: float32 s / variant s; batch cost: float32 s / float32 s at batch 1")
    print(f"{'N':>4} {'batch':>5} " + " ".join(f"{name + ' s':>12}" for name in models)
          + " " + " ".join(f"{name + ' x':>12}" for name in models if name != "float32") + f" {'batch cost':>10}")
    for n in map(int, args.lengths.split(",")):
        for batch in map(int, args.batches.split(",")):
            times = {name: [] for name in models}
            for rep in range(args.repeats + 1):
                for name, lm in models.items():
                    seconds = step_seconds(lm, layout, n, batch)
                    if rep:
                        times[name].append(seconds)
                    else:
                        warmup[f"{name}-{n}-{batch}"] = seconds  # torch.compile compiles here, for each new shape
            med = {name: statistics.median(t) for name, t in times.items()}
            base.setdefault(n, med["float32"] / batch)  # per text, at the first batch size listed (1 by default)
            rows.append({"n_tokens": n, "batch": batch, "seconds": times,
                         "speedup": {name: med["float32"] / med[name] for name in models if name != "float32"},
                         "batch_cost": med["float32"] / base[n]})
            print(f"{n:>4} {batch:>5} " + " ".join(f"{med[name]:>12.3f}" for name in models) + " "
                  + " ".join(f"{x:>12.2f}" for x in rows[-1]["speedup"].values()) + f" {rows[-1]['batch_cost']:>10.2f}",
                  flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"step-{fp32.device.type}-{args.variants.replace(',', '-').replace(':', '_')}.json"
    out.write_text(json.dumps({"model": fp32.name, "fingerprint": fp32.fingerprint, "device": str(fp32.device),
                               "threads": torch.get_num_threads(), "rows": rows, "first_step_seconds": warmup}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
