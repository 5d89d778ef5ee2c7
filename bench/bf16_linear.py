"""What a bf16 pass of the model itself costs (the passes that check a text and decode a file, and
`polish`'s), with PyTorch's own bf16 linears against :class:`~prototokens.model.Bf16Linear` (bf16
linears summed in float32, what a CPU without bf16 units now runs), in float32-step units, and how
far the two read apart. Forward without and with the backward, at one length, medians of a few
repetitions that alternate between the three models.

    .venv/bin/python bench/bf16_linear.py [--n 64] [--repeats 3] [--out bench/results/bf16-linear-avx2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import prototokens as pt
from step import torch_bf16


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("bench/results/bf16-linear-avx2"))
    args = p.parse_args()
    models = {"float32": pt.load_model(), "bfloat16 summed in float32": pt.load_model(dtype="bfloat16"),
              "bfloat16, PyTorch's linears": torch_bf16(pt.DEFAULT_MODEL)}
    x = torch.randn(1, args.n + 2, models["float32"].d_model, generator=torch.Generator().manual_seed(0)) * models["float32"].embedding_std

    def forward(lm):
        with torch.no_grad():
            lm.logits(x)

    def step(lm):
        z = x.clone().requires_grad_()
        lm.logits(z).float().logsumexp(-1).sum().backward()

    seconds = {kind: {name: [] for name in models} for kind in ("forward", "forward and backward")}
    for rep in range(args.repeats + 1):
        for kind, run in (("forward", forward), ("forward and backward", step)):
            for name, lm in models.items():
                started = time.perf_counter()
                run(lm)
                if rep:
                    seconds[kind][name].append(time.perf_counter() - started)
    fp32_step = statistics.median(seconds["forward and backward"]["float32"])
    with torch.no_grad():
        a, b = (models[k].logits(x).float() for k in ("bfloat16 summed in float32", "bfloat16, PyTorch's linears"))
    result = {"model": models["float32"].name, "n_tokens": args.n, "threads": torch.get_num_threads(),
              "cpu_bf16_units": pt.model.native_bf16(torch.device("cpu")), "seconds": seconds,
              "fp32_steps": {kind: {name: statistics.median(t) / fp32_step for name, t in by.items()} for kind, by in seconds.items()},
              "logits_apart": {"max": float((a - b).abs().max()), "mean": float((a - b).abs().mean()),
                               "argmax_agree": float((a.argmax(-1) == b.argmax(-1)).float().mean())}}
    for kind, by in result["fp32_steps"].items():
        print(f"{kind}: " + ", ".join(f"{name} {v:.2f}" for name, v in by.items()) + " fp32 steps")
    print("logits apart:", result["logits_apart"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"bf16-linear-n{args.n}.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
