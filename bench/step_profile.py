"""Where a step's time goes, and what the steps' twin changes: one forward and backward at N
through the model in fp32, in bf16, and through the bf16 steps' twin (``FrozenLM.for_steps``:
on a CPU, attention in float32), each profiled by torch.profiler (top operators by own time);
then, given a solved proto file (``--proto``), each one's smallest target lead and its gradient's
cosine with float32's on it.

    .venv/bin/python bench/step_profile.py [--n 64] [--proto bench/results/gpu/fast-books-0.proto.safetensors]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

import prototokens as pt
from prototokens.optimize import evaluate


def step(lm, layout, vectors, targets):
    leaves = {k: v.clone().requires_grad_() for k, v in vectors.items()}
    scores = evaluate(lm, layout, leaves, targets)
    scores.objective.sum().backward()
    return scores, torch.cat([leaves[k].grad.flatten() for k in sorted(leaves)])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--proto", help="a solved proto file to read the leads and gradients on (optional)")
    p.add_argument("--rows", type=int, default=8, help="operators shown per model")
    args = p.parse_args()
    fp32 = pt.load_model(device="cpu")
    models = {"float32": fp32, "bfloat16": fp32.in_dtype("bfloat16"), "bfloat16 steps": fp32.in_dtype("bfloat16").for_steps()}
    layout = pt.get_layout(pt.layout.DEFAULT_LAYOUT)
    g = torch.Generator().manual_seed(0)
    vectors = {k: torch.randn(1, fp32.d_model, generator=g) * fp32.embedding_std for k in ("e", "m")}
    targets = [[5 + i for i in range(args.n)]]
    print(f"torch threads {torch.get_num_threads()}, N = {args.n}, batch 1")
    for name, lm in models.items():
        for _ in range(3):
            step(lm, layout, vectors, targets)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step(lm, layout, vectors, targets)
        ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
        total = sum(e.self_cpu_time_total for e in ops) / 1e3
        print(f"\n{name}: {total:.0f} ms in all; top operators by own time (ms, calls)")
        for e in ops[: args.rows]:
            print(f"  {e.self_cpu_time_total / 1e3:7.1f}  {e.count:4d}  {e.key}")
    if not args.proto:
        return
    proto = pt.load(args.proto)
    layout = pt.get_layout(proto.layout)
    e, m = proto.vectors(0)
    vectors = {"e": e[None].float(), "m": m[None].float()}
    targets = [proto.texts[0].target_ids]
    reference = step(fp32, layout, vectors, targets)[1]
    print(f"\n{args.proto} ({len(targets[0])} tokens): smallest target lead; gradient's cosine with float32's")
    for name, lm in models.items():
        scores, grad = step(lm, layout, vectors, targets)
        print(f"  {name:15s} {scores.margin.item():7.3f}  {F.cosine_similarity(grad, reference, dim=0).item():.3f}")


if __name__ == "__main__":
    main()
