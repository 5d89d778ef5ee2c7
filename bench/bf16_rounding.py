"""Why a proto file exact in float32 misreads in bfloat16: which of bf16's roundings make the
difference. For each text of a proto file (read alone): each target's lead in float32 and in a
bf16 load, and in fp32 passes that round the outputs of chosen modules to bf16 (every linear and
norm; attention or MLP linears only; each layer's linears; the residual stream between layers,
at every input slot or only at one of them), so that bf16's rounding acts only there; and in a
bf16 load whose linears sum their products in fp32 and round once, which differs from this CPU's
bf16 kernels only in a few outputs rounded the other way (their summation order), and so shows
how far such differences, which every other machine's kernels make too, move a lead.

    .venv/bin/python bench/bf16_rounding.py bench/results/latency-v7-seed1/fast-books-0.proto.safetensors
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

import prototokens as pt
from portable import leads
from prototokens.layout import E, get_layout
from prototokens.model import FrozenLM
from prototokens.proto import ProtoTokens


def rounded_leads(lm, layout, e, m, target, modules, slots: slice = slice(None)) -> torch.Tensor:
    """``leads`` of an fp32 pass whose ``modules`` round their outputs (the first, if a tuple) to
    bf16 at the input ``slots``."""
    def to_bf16(module, inputs, out):
        h = out[0] if isinstance(out, tuple) else out
        h = h.clone()
        h[:, slots] = h[:, slots].bfloat16().float()
        return (h, *out[1:]) if isinstance(out, tuple) else h

    hooks = [mod.register_forward_hook(to_bf16) for mod in modules]
    try:
        return leads(lm, layout, e, m, target)
    finally:
        for h in hooks:
            h.remove()


def summed_in_fp32(linear: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """A bf16 linear's output with its products summed in fp32 and rounded to bf16 once."""
    return F.linear(x.float(), linear.weight.float(), None if linear.bias is None else linear.bias.float()).bfloat16()


def fp32_accumulated(lm) -> FrozenLM:
    """A bf16 copy of ``lm`` whose linears take the same bf16 inputs and weights but sum in fp32
    (:func:`summed_in_fp32`); every other op runs in bf16 as in a bf16 load."""
    model = copy.deepcopy(lm.in_dtype("bfloat16").model)
    for linear in (m for m in model.modules() if isinstance(m, nn.Linear)):
        linear.forward = lambda x, linear=linear: summed_in_fp32(linear, x)
    return FrozenLM(model, lm.tokenizer, lm.name)


def differing_outputs(lm, layout, e, m, target) -> float:
    """The fraction of all linear outputs of a bf16 load's pass that differ from the same linear
    summed in fp32 and rounded once."""
    counts = []

    def compare(module, inputs, out):
        counts.append(((out != summed_in_fp32(module, inputs[0])).sum().item(), out.numel()))

    bf16 = lm.in_dtype("bfloat16")
    hooks = [mod.register_forward_hook(compare) for mod in bf16.model.modules() if isinstance(mod, nn.Linear)]
    try:
        leads(bf16, layout, e, m, target)
    finally:
        for h in hooks:
            h.remove()
    return sum(c for c, _ in counts) / sum(n for _, n in counts)


def sites(lm) -> dict[str, list[nn.Module]]:
    layers = lm.model.model.layers
    named = [(n.split(".")[-1], m) for layer in layers for n, m in layer.named_modules()]
    linear = [m for _, m in named if isinstance(m, nn.Linear)]
    return {"every linear and norm": linear + [m for _, m in named if type(m).__name__.endswith("RMSNorm")],
            "every linear": linear,
            "attention linears": [m for n, m in named if isinstance(m, nn.Linear) and n in {"q_proj", "k_proj", "v_proj", "o_proj"}],
            "MLP linears": [m for n, m in named if isinstance(m, nn.Linear) and n in {"gate_proj", "up_proj", "down_proj"}],
            "the residual stream after every layer": list(layers),
            "every linear and norm output and the residual stream": linear + list(layers) + [m for _, m in named if type(m).__name__.endswith("RMSNorm")]} | {
            f"layer {i}'s linears": [m for m in layer.modules() if isinstance(m, nn.Linear)] for i, layer in enumerate(layers)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("proto")
    p.add_argument("--out", help="JSON to write (default: bench/results/bf16-rounding-NAME.json)")
    args = p.parse_args()
    lm = pt.load_model(dtype="float32")
    proto = ProtoTokens.load(args.proto, lm)
    layout = get_layout(proto.layout)
    accumulated = fp32_accumulated(lm)
    rows = []
    for i, text in enumerate(proto.texts):
        e, m = proto.vectors(i)
        target = text.target_ids
        found = {"float32": leads(lm, layout, e, m, target), "bfloat16 load": leads(lm.in_dtype("bfloat16"), layout, e, m, target),
                 "bfloat16 load, linears summed in fp32": leads(accumulated, layout, e, m, target)}
        found |= {f"float32, {name} rounded to bf16": rounded_leads(lm, layout, e, m, target, mods) for name, mods in sites(lm).items()}
        layers, e_slot = list(lm.model.model.layers), layout.slots(len(target)).index(E)
        for name, slots in ((f"slot {e_slot} (e)", slice(e_slot, e_slot + 1)), ("every slot before e's", slice(0, e_slot)),
                            ("every slot after e's", slice(e_slot + 1, None))):
            if slots.start != slots.stop:
                found[f"float32, the residual stream at {name} rounded to bf16"] = rounded_leads(lm, layout, e, m, target, layers, slots)
        with torch.no_grad():
            hidden = torch.stack(lm.model(inputs_embeds=layout.build(e[None], m[None], [len(target)], lm), output_hidden_states=True).hidden_states)[:, 0]
        norms = hidden.norm(dim=-1).amax(0)  # per slot, its largest norm over the layers
        size = {"e_slot": round(float(norms[e_slot]), 1), "others_median": round(float(norms[torch.arange(len(norms)) != e_slot].median()), 1),
                "first_three_slots": [round(float(x), 1) for x in norms[:3]]}
        rows.append({"text": i, "n_tokens": len(target), "largest_residual_norm": size, "passes": {
            name: {"smallest_lead": round(float(x.min()), 3), "misread": int((x <= 0).sum()), "leads": [round(v, 3) for v in x.tolist()]}
            for name, x in found.items()}})
        print(f"text {i} ({len(target)} tokens, layout {proto.layout}): smallest lead, tokens misread")
        bf, everything = found["bfloat16 load"], found["float32, every linear and norm output and the residual stream rounded to bf16"]
        agree = {"bf16_load_mean_shift": round(float((bf - found["float32"]).abs().mean()), 3),
                 "everything_rounded_mean_shift": round(float((everything - found["float32"]).abs().mean()), 3),
                 "correlation_of_their_leads": round(float(torch.corrcoef(torch.stack([bf, everything]))[0, 1]), 3)}
        rows[-1]["everything_rounded_against_bf16"] = agree
        summed = found["bfloat16 load, linears summed in fp32"]
        rows[-1]["fp32_sums_against_bf16"] = kernel = {
            "linear_outputs_differing": round(differing_outputs(lm, layout, e, m, target), 6),
            "mean_move": round(float((summed - bf).abs().mean()), 3), "largest_move": round(float((summed - bf).abs().max()), 3)}
        print(f"  summing the linears in fp32 changes {kernel['linear_outputs_differing']:.4%} of their outputs (summation order) "
              f"and moves a bf16 load's leads by a mean {kernel['mean_move']}, at most {kernel['largest_move']}")
        print(f"  leads move from fp32's by a mean {agree['bf16_load_mean_shift']} in a bf16 load and {agree['everything_rounded_mean_shift']} "
              f"with everything rounded; the two passes' leads correlate {agree['correlation_of_their_leads']}")
        print(f"  the residual stream's largest norm: {size['e_slot']} at e's slot, a median {size['others_median']} at the others; "
              f"slots 0-2: {size['first_three_slots']}")
        for name, x in found.items():
            print(f"  {name:60s} {float(x.min()):7.2f} {int((x <= 0).sum()):3d}")
    out = Path(args.out or f"bench/results/bf16-rounding-{Path(args.proto).name.split('.')[0]}.json")
    out.write_text(json.dumps({"proto": args.proto, "texts": rows}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
