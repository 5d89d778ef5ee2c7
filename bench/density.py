"""How much information a source's passages carry a token: H_LM / N in nats (no context, as
capacity's H_LM), the mean ± std over a source's passages, at each length.

Capacity in tokens depends on this density: a model that holds a fixed number of nats holds
fewer tokens of denser text. Read our rows against the paper's in nats as well as in tokens.

    .venv/bin/python bench/density.py [--model smollm2-135m] [--sources books,books:austen,random]
"""

from __future__ import annotations

import argparse
import statistics

import prototokens as pt
from prototokens.data.passages import sample_passages
from prototokens.metrics import h_lm


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="embedded name, GGUF file, folder or hub id (default: the embedded default)")
    p.add_argument("--sources", default="books,books:shakespeare,books:austen,books:canterbury,random")
    p.add_argument("--texts", type=int, default=5, help="passages a source (the capacity sweeps' --texts 5, data seed 0)")
    p.add_argument("--lengths", default="64,128")
    args = p.parse_args()
    lm = pt.load_model(args.model, device="cpu")
    lengths = [int(n) for n in args.lengths.split(",")]
    print(f"model {lm.name}; nats a token, mean ± std over {args.texts} passages (each passage's value)")
    for source in args.sources.split(","):
        passages = sample_passages(lm, source, args.texts, max(lengths), seed=0)
        for n in lengths:
            per = [h_lm(lm, q.target_ids[:n]) / n for q in passages]
            print(f"{source:>18} N = {n:>4}: {statistics.mean(per):.2f} ± {statistics.stdev(per):.2f}  "
                  f"({', '.join(f'{x:.2f}' for x in per)})", flush=True)
        print(f"{'':>18} texts: {', '.join(q.text_name for q in passages)}")


if __name__ == "__main__":
    main()
