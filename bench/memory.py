"""Peak memory per text at each N, for encoding (one optimiser step: forward + backward) and
for one-pass decoding. Each measurement runs in a fresh process: peak resident memory (CPU)
or peak allocated device memory (CUDA), minus the same process's figure with the model loaded.

    .venv/bin/python bench/memory.py [--lengths 16,32,64,128,256,512] [--batch 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path


def _peak_mb(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # kB on Linux


def measure(model: str, device: str, what: str, n: int, batch: int) -> dict:
    """In this process: the peak memory of one encode step or one decode pass."""
    import torch

    import prototokens as pt

    lm = pt.load_model(model, device=device)
    lm.fingerprint, lm.embedding_std  # noqa: B018 - computed before the baseline is read
    with torch.inference_mode():  # a 1-token pass pages every weight in, so the baseline holds them
        lm.logits(torch.zeros(1, 1, lm.d_model))
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    base = _peak_mb(device)
    targets = [[5] * n for _ in range(batch)]
    if what == "encode":
        pt.optimize(lm, targets, recipe=pt.get_recipe("fast").with_overrides(max_steps=1), progress=False)
    else:
        e, m = torch.zeros(batch, lm.d_model), torch.zeros(batch, lm.d_model)
        with torch.inference_mode():
            lm.logits(pt.get_layout(pt.layout.DEFAULT_LAYOUT).build(e, m, [n] * batch).to(lm.device))
    peak = _peak_mb(device)
    return {"what": what, "n_tokens": n, "batch": batch, "peak_mb": peak - base, "per_text_mb": (peak - base) / batch}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--device", default="cpu")
    p.add_argument("--lengths", default="16,32,64,128,256,512")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    p.add_argument("--one", help=argparse.SUPPRESS)  # what,n: measure in this process and print JSON
    args = p.parse_args()
    if args.one:
        what, n = args.one.split(",")
        print(json.dumps(measure(args.model, args.device, what, int(n), args.batch)))
        return
    rows = []
    print(f"{'N':>5} {'encode MB/text':>15} {'decode MB/text':>15}")
    for n in (int(x) for x in args.lengths.split(",")):
        pair = []
        for what in ("encode", "decode"):
            out = subprocess.run([sys.executable, __file__, "--model", args.model, "--device", args.device,
                                  "--batch", str(args.batch), "--one", f"{what},{n}"],
                                 capture_output=True, text=True, check=True)
            pair.append(json.loads(out.stdout.strip().splitlines()[-1]))
        rows += pair
        print(f"{n:>5} {pair[0]['per_text_mb']:>15.0f} {pair[1]['per_text_mb']:>15.0f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"memory-{args.device.split(':')[0]}.json"
    out.write_text(json.dumps({"model": args.model, "device": args.device, "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
