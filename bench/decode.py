"""Decode speed (the paper's Fig. 4): one forward pass over proto-tokens against greedy
autoregressive generation of the same N tokens with a KV cache, same model, same dtype,
measured side by side. Prints a table and writes JSON.

    .venv/bin/python bench/decode.py [--model M] [--device D] [--dtype float32] [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

import prototokens as pt
from prototokens.outcome import Outcome
from prototokens.speed import time_decode

GRID = [16, 32, 64, 128, 256, 512]


def random_proto(lm: pt.FrozenLM, n: int, batch: int) -> pt.ProtoTokens:
    """Decode cost does not depend on the values of e and m: random ones will do."""
    g = torch.Generator().manual_seed(0)
    e, m = (torch.randn(batch, lm.d_model, generator=g) * lm.embedding_std for _ in range(2))
    texts = [pt.TextRecord.of(Outcome.unsolved(), [0] * n, "") for _ in range(batch)]
    model = {"name": lm.name, "fingerprint": lm.fingerprint, "d_model": lm.d_model}
    return pt.ProtoTokens(e, m, pt.layout.DEFAULT_LAYOUT, None, model, {}, texts)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=pt.DEFAULT_MODEL)
    p.add_argument("--device")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--grid", default=",".join(map(str, GRID)))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    args = p.parse_args()
    lm = pt.load_model(args.model, device=args.device, dtype=args.dtype)
    rows = []
    print(f"{lm.name} on {lm.device} ({lm.dtype}), torch threads {torch.get_num_threads()}")
    print(f"{'N':>5} {'batch':>5} {'one pass ms':>12} {'greedy ms':>10} {'one pass tok/s':>15} {'greedy tok/s':>13} {'ratio':>7}")
    for n in (int(x) for x in args.grid.split(",")):
        if n > lm.max_length:
            break
        for batch in (int(x) for x in args.batches.split(",")):
            row = time_decode(lm, random_proto(lm, n, batch), repeats=args.repeats)
            rows.append(row)
            print(f"{n:>5} {batch:>5} {row['one_pass_s'] * 1e3:>12.1f} {row['greedy_s'] * 1e3:>10.1f} "
                  f"{row['one_pass_tokens_per_s']:>15.0f} {row['greedy_tokens_per_s']:>13.0f} {row['ratio']:>6.1f}x", flush=True)
    ratios = [r["ratio"] for r in rows]
    print(f"mean throughput ratio {sum(ratios) / len(ratios):.1f}x (the paper: 279x on GPU)")
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"decode-{lm.device.type}-{args.dtype}.json"
    out.write_text(json.dumps({"model": lm.name, "fingerprint": lm.fingerprint, "device": str(lm.device),
                               "dtype": args.dtype, "threads": torch.get_num_threads(),
                               "machine": platform.processor() or platform.machine(), "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
