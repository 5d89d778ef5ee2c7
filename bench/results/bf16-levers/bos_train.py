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

source, idx, n, sigma, seed, steps, mix = (
    sys.argv[1],
    int(sys.argv[2]),
    int(sys.argv[3]),
    0.0,
    int(sys.argv[4]),
    int(sys.argv[5]),
    "noisy",
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
base = lay


class WithStart:
    """em-plus-one behind a fixed document-start token at slot 0."""

    vectors = base.vectors

    def inputs(self, v, t, model):
        z = base.inputs(v, t, model)
        bos = model.start_embedding().to(z.dtype)[None, None].expand(z.shape[0], 1, -1)
        return torch.cat([bos, z], 1)

    def outputs(self, width):
        o = base.outputs(width)
        return slice(o.start + 1, o.stop + 1)


lay = WithStart()


def noisy(v):
    return evaluate(lm, lay, v, tg, *recipe.objective)


t0 = time.time()
for step in range(recipe.max_steps + 1):
    v = dict(params)
    if mix == "clean+noisy":
        s = evaluate(lm, lay, v, tg, *recipe.objective)
        nz = noisy(v)
        obj = s.objective + nz.objective
    else:
        nz = noisy(v)
        obj = nz.objective
        s = None
    if step % 10 == 0:
        with torch.no_grad():
            c = evaluate(lm, lay, {k: x.detach() for k, x in v.items()}, tg)
            b = evaluate(bf, lay, {k: x.detach() for k, x in v.items()}, tg) if c.accuracy.item() == 1 else None
        print(
            f"step {step} t {time.time() - t0:.0f}s noisy {nz.accuracy.item():.3f} {nz.margin.item():.2f} | "
            f"fp32 {c.accuracy.item():.3f} {c.margin.item():.2f} | "
            f"bf16 " + (f"{b.accuracy.item():.3f} {b.margin.item():.2f}" if b else "-"),
            flush=True,
        )
        if b is not None and b.accuracy.item() == 1 and b.margin.item() >= 0.3 and c.margin.item() >= 0.3:
            print("SOLVED both", step, flush=True)
            break
    obj.sum().backward()
    opt.step([torch.tensor([0]), torch.tensor([0])])
