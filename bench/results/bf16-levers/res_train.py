"""fast's optimiser on one text with the objective taken through a noisy fp32 pass (sigma relative noise on
every linear and norm output); every 10 steps a clean fp32 read and a bf16-load read. Stops when both exact (margin 0.3)."""

import sys
import time

import torch

import prototokens as pt
from prototokens.layout import resolve_layout
from prototokens.optimize import evaluate, initial_vectors
from prototokens.optimizers import build_optimizer
from prototokens.studies import capacity
from prototokens.studies.common import sample

source, idx, n, tau, seed, steps, lam = (
    sys.argv[1],
    int(sys.argv[2]),
    int(sys.argv[3]),
    float(sys.argv[4]),
    int(sys.argv[5]),
    int(sys.argv[6]),
    float(sys.argv[7]),
)
torch.manual_seed(1000 + seed)
lm = pt.load_model(dtype="float32")
bf = lm.in_dtype("bfloat16")
if source.startswith("file:"):
    from prototokens.proto import ProtoTokens

    tg = [ProtoTokens.load(source[5:], lm).texts[idx].target_ids[:n]]
else:
    config = capacity.Config(source=source, texts=idx + 1)
    texts = sample(lm, config, config.texts, config.grid[-1], config.context_tokens)
    tg = [texts[idx].target_ids[:n]]
    print(texts[idx].id, flush=True)
recipe = pt.get_recipe("fast").at_length(n)
if steps:
    from dataclasses import replace

    recipe = replace(recipe, max_steps=steps)
lay = resolve_layout("em-plus-one")
params = initial_vectors(lm, recipe, seed, lay.vectors, {k: 1 for k in lay.vectors})
opt = build_optimizer(list(params.values()), recipe, lm)
cap = {}
lm.model.model.layers[0].register_forward_hook(
    lambda mod, i, o: cap.__setitem__("h", o[0] if isinstance(o, tuple) else o)
)


def resolution():
    h = cap["h"][0, 1:].float()
    return (h[1:] - h[:-1]).norm(dim=-1) / h[1:].norm(dim=-1)


t0 = time.time()
for step in range(recipe.max_steps + 1):
    v = dict(params)
    nz = evaluate(lm, lay, v, tg, *recipe.objective)
    d = resolution()
    obj = nz.objective + lam * torch.relu(tau - d).mean() / tau
    if step % 10 == 0:
        with torch.no_grad():
            c = evaluate(lm, lay, {k: x.detach() for k, x in v.items()}, tg)
            b = evaluate(bf, lay, {k: x.detach() for k, x in v.items()}, tg) if c.accuracy.item() == 1 else None
        print(
            f"step {step} t {time.time() - t0:.0f}s min res {d.min().item():.4f} at {d.argmin().item() + 2} | "
            f"train {nz.accuracy.item():.3f} {nz.margin.item():.2f} | "
            f"fp32 {c.accuracy.item():.3f} {c.margin.item():.2f} | "
            f"bf16 " + (f"{b.accuracy.item():.3f} {b.margin.item():.2f}" if b else "-"),
            flush=True,
        )
        if b is not None and b.accuracy.item() == 1 and b.margin.item() >= 0.3 and c.margin.item() >= 0.3:
            print("SOLVED both", step, flush=True)
            break
    obj.sum().backward()
    opt.step([torch.tensor([0]), torch.tensor([0])])
