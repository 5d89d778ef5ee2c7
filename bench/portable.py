"""Do the committed proto files read the same here? Every ``*.proto.safetensors`` under
results/ (the trained controls of connectivity left out: they encode no text), each text
decoded alone in float32 and bfloat16 on this machine, against what its file says it holds.
Also how far each target's lead over the runner-up moves between the two dtypes.

    .venv/bin/python bench/portable.py    # writes bench/results/portable-CAPABILITY.json
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

import prototokens as pt
from prototokens.layout import get_layout
from prototokens.proto import ProtoTokens


def leads(lm, layout, e, m, target: list[int]) -> torch.Tensor:
    """Each target's logit lead over the best other token, one pass of this text alone."""
    z = layout.build(e[None], m[None], [len(target)], lm).to(lm.device)
    with torch.no_grad():
        logits = lm.logits(z)[0, layout.outputs(len(target))].float()
    t = torch.tensor(target)[:, None]
    return logits.gather(-1, t)[:, 0] - logits.scatter(-1, t, -torch.inf).max(-1).values


def main():
    lm = pt.load_model(dtype="float32")
    rows, shifts = [], []
    for f in sorted(Path("results").rglob("*.proto.safetensors")):
        if f.name.startswith("control"):
            continue
        p = ProtoTokens.load(f)
        for i, t in enumerate(p.texts):
            lead = {dt: leads(lm.in_dtype(dt), get_layout(p.layout), *p.vectors(i), t.target_ids) for dt in ("float32", "bfloat16")}
            shifts.append((lead["bfloat16"] - lead["float32"]).abs())
            rows.append({"file": str(f), "text": i, "recipe": pt.recipe.label(p.recipe), "status": t.status,
                         "margin_recorded": t.margin, **{f"exact_{dt}": bool((v > 0).all()) for dt, v in lead.items()},
                         **{f"min_lead_{dt}": float(v.min()) for dt, v in lead.items()}})
    shift = torch.cat(shifts)
    solved = [r for r in rows if r["status"] == "solved"]
    summary = {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "texts": len(rows), "solved": len(solved),
               **{f"solved_exact_{dt}": sum(r[f"exact_{dt}"] for r in solved) for dt in ("float32", "bfloat16")},
               "lead_shift_bf16_vs_fp32": {"positions": shift.numel(), **{q: float(shift.quantile(v)) for q, v in
                                           (("median", .5), ("p95", .95), ("p99", .99))}, "max": float(shift.max())}}
    print(json.dumps(summary, indent=1))
    for r in solved:
        if not (r["exact_float32"] and r["exact_bfloat16"]):
            print(f"{r['file']} text {r['text']} ({r['recipe']}): recorded margin {r['margin_recorded']:.2f}, here "
                  f"fp32 {r['min_lead_float32']:.2f}, bf16 {r['min_lead_bfloat16']:.2f}")
    out = Path(f"bench/results/portable-{summary['cpu_capability'].lower()}.json")
    out.write_text(json.dumps(summary | {"rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
