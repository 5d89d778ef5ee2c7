"""How far a logit margin moves between kernel paths and dtypes: the basis of the default
recipe's margin. Two book passages of 64 tokens, as token embeddings plus small noise (inputs
off the token manifold, like proto-tokens), go through the model in bf16 on the CPU's own
kernel path and on the scalar one (ATEN_CPU_CAPABILITY=default), and in fp32. For the top two
tokens of the first, the change of their logit difference is reported.

    .venv/bin/python bench/margin_noise.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch


def logits(dtype: str, path: str) -> None:
    import prototokens as pt
    from prototokens.data import sample_passages

    torch.manual_seed(0)
    lm = pt.load_model(device="cpu", dtype=dtype)
    ids = torch.tensor([p.target_ids for p in sample_passages(lm, "books", 2, 64, seed=0)])
    with torch.no_grad():
        x = lm.embed(ids).float()
        torch.save(lm.logits(x + 0.05 * torch.randn_like(x)).float(), path)


def main():
    work = Path(tempfile.mkdtemp())
    runs = {"bf16": ("bfloat16", {}), "bf16 scalar": ("bfloat16", {"ATEN_CPU_CAPABILITY": "default"}),
            "fp32": ("float32", {})}
    for name, (dtype, env) in runs.items():
        subprocess.run([sys.executable, __file__, dtype, str(work / f"{name}.pt")], check=True,
                       env=os.environ | env, capture_output=True)
    ref = torch.load(work / "bf16.pt")
    top = ref.topk(2, -1).indices
    rows = {}
    for name in ("bf16 scalar", "fp32"):
        other = torch.load(work / f"{name}.pt")
        a, b = ref.gather(-1, top), other.gather(-1, top)
        shift = ((a[..., 0] - a[..., 1]) - (b[..., 0] - b[..., 1])).abs().flatten()
        rows[f"bf16 vs {name}"] = {q: float(shift.quantile(v)) for q, v in (("median", .5), ("p95", .95), ("p99", .99))} | {
            "max": float(shift.max())}
        print(f"bf16 vs {name}: margin shift " + ", ".join(f"{k} {v:.3f}" for k, v in rows[f'bf16 vs {name}'].items()))
    out = Path("bench/results/margin-noise.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cpu_capability": torch.backends.cpu.get_cpu_capability(), "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    logits(*sys.argv[1:]) if len(sys.argv) == 3 else main()
