"""How far a logit margin moves between kernel paths, batch shapes and dtypes: the basis of
the default recipe's margin and of reading each text alone in bf16. Eight book passages of 64
tokens, as token embeddings plus small noise (inputs off the token manifold, like proto-tokens),
go through the model in bf16 on the CPU's own kernel path (as one batch of 8, and each row
alone) and on the scalar one (ATEN_CPU_CAPABILITY=default), and in fp32. For the top two tokens
of the first, the change of their logit difference is reported.

    .venv/bin/python bench/margin_noise.py    # writes bench/results/margin-noise-CAPABILITY.json
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

PASSAGES = 8


def logits(dtype: str, path: str) -> None:
    """Save the batch's logits and each row's read alone (in ``path`` and ``path``.alone)."""
    import prototokens as pt
    from prototokens.data import sample_passages

    torch.manual_seed(0)
    lm = pt.load_model(device="cpu", dtype=dtype)
    ids = torch.tensor([p.target_ids for p in sample_passages(lm, "books", PASSAGES, 64, seed=0)])
    with torch.no_grad():
        x = lm.embed(ids).float()
        x = x + 0.05 * torch.randn_like(x)
        torch.save(lm.logits(x).float(), path)
        torch.save(torch.cat([lm.logits(row[None]).float() for row in x]), path + ".alone")


def shift(ref: torch.Tensor, other: torch.Tensor) -> dict:
    """Quantiles of how far the lead of ``ref``'s top token over its second moves in ``other``."""
    top = ref.topk(2, -1).indices
    a, b = ref.gather(-1, top), other.gather(-1, top)
    moved = ((a[..., 0] - a[..., 1]) - (b[..., 0] - b[..., 1])).abs().flatten()
    return {q: float(moved.quantile(v)) for q, v in (("median", .5), ("p95", .95), ("p99", .99))} | {
        "max": float(moved.max()), "argmax_changed": int((ref.argmax(-1) != other.argmax(-1)).sum())}


def main():
    work = Path(tempfile.mkdtemp())
    runs = {"bf16": ("bfloat16", {}), "bf16 scalar": ("bfloat16", {"ATEN_CPU_CAPABILITY": "default"}),
            "fp32": ("float32", {})}
    for name, (dtype, env) in runs.items():
        done = subprocess.run([sys.executable, __file__, dtype, str(work / f"{name}.pt")], env=os.environ | env,
                              capture_output=True, text=True)
        if done.returncode:  # torch's scalar bf16 attention fails on some CPUs (pack_vnni2 on AMX)
            print(f"{name}: failed here ({done.stderr.strip().splitlines()[-1]}); its row is left out")
    ref = torch.load(work / "bf16.pt")
    rows = {f"bf16 vs {name}": shift(ref, torch.load(work / f"{name}.pt")) for name in ("bf16 scalar", "fp32")
            if (work / f"{name}.pt").exists()}
    rows[f"bf16, batch of {PASSAGES} vs each row alone"] = shift(ref, torch.load(work / "bf16.pt.alone"))
    rows[f"fp32, batch of {PASSAGES} vs each row alone"] = shift(torch.load(work / "fp32.pt"), torch.load(work / "fp32.pt.alone"))
    for name, row in rows.items():
        print(f"{name}: margin shift " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()))
    capability = torch.backends.cpu.get_cpu_capability()
    out = Path(f"bench/results/margin-noise-{capability.lower()}.json")
    out.write_text(json.dumps({"cpu_capability": capability, "passages": PASSAGES, "tokens": 64,
                               "cpu_flags": sorted(f for f in ("avx512_bf16", "amx_bf16") if f in Path("/proc/cpuinfo").read_text()),
                               "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    logits(*sys.argv[1:]) if len(sys.argv) == 3 else main()
