import sys
import time
from dataclasses import replace

import torch
import torch.nn as nn

import prototokens as pt
from prototokens.layout import resolve_layout
from prototokens.optimize import evaluate
from prototokens.optimizers import build_optimizer
from prototokens.proto import ProtoTokens

path, sigma, lrf, steps = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
torch.manual_seed(0)
lm = pt.load_model(dtype="float32")
bf = lm.in_dtype("bfloat16")
p = ProtoTokens.load(path, lm)
lay = resolve_layout(p.layout)
tg = [p.texts[0].target_ids]
e, m = p.vectors(0)
params = {"e": e[None].clone().requires_grad_(), "m": m[None].clone().requires_grad_()}
recipe = replace(pt.get_recipe("fast"), schedule="constant", lr=0.22 * lrf, warmup=0)
opt = build_optimizer(list(params.values()), recipe, lm)
mods = [mod for mod in lm.model.modules() if isinstance(mod, nn.Linear) or type(mod).__name__.endswith("RMSNorm")]


def noisy(v):
    return evaluate(bf, lay, v, tg, *recipe.objective)


def noisy_old(v):
    hs = [mod.register_forward_hook(lambda mod, i, o: o * (1 + sigma * torch.randn_like(o))) for mod in mods]
    try:
        return evaluate(lm, lay, v, tg, *recipe.objective)
    finally:
        for h in hs:
            h.remove()


t0 = time.time()
for step in range(steps + 1):
    v = dict(params)
    s = evaluate(lm, lay, v, tg, *recipe.objective)
    obj = s.objective
    if sigma > 0:
        n = noisy(v)
        obj = obj + n.objective
        print(
            f"  {step} fp32 {s.accuracy.item():.3f} {s.margin.item():.2f} bf16 {n.accuracy.item():.3f} {n.margin.item():.2f} t {time.time() - t0:.0f}",
            flush=True,
        )
        if n.accuracy.item() == 1 and n.margin.item() >= 0.3 and s.margin.item() >= 0.3 and s.accuracy.item() == 1:
            print("SOLVED both", step)
            break
    if step % 10 == 0:
        with torch.no_grad():
            b = evaluate(bf, lay, {k: x.detach() for k, x in v.items()}, tg)
        print(
            f"step {step} t {time.time() - t0:.0f}s fp32 acc {s.accuracy.item():.3f} lead {s.margin.item():.2f} | "
            f"noisy acc {n.accuracy.item() if sigma else 0:.3f} lead {n.margin.item() if sigma else 0:.2f} | "
            f"bf16 acc {b.accuracy.item():.3f} lead {b.margin.item():.2f}",
            flush=True,
        )
        if b.accuracy.item() == 1.0 and b.margin.item() >= 0.3 and s.margin.item() >= 0.3:
            print("SOLVED both", step)
            break
    obj.sum().backward()
    opt.step([torch.tensor([0]), torch.tensor([0])])
