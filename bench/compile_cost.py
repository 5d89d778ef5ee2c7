"""What torch.compile costs and gives on one device: the first step (the compile) and the median
step of a model of SmolLM2-135M's shape with random weights (timings do not depend on the values,
and no weights need carrying to a GPU without network), for a batch of 1 and then of 8, N = 64.
Ways: ``eager``; ``regional``, the decoder layers compiled by ``--compile``'s own code
(:meth:`FrozenLM.for_steps`: one graph for all 30); ``whole``, the whole model compiled, as ``--compile`` did before. One JSON line per way and
batch, printed as it is measured, so a way stopped by a time limit still leaves its first lines.

    python bench/compile_cost.py WAY [--dtype bfloat16] [--device cuda] [--mode reduce-overhead]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from prototokens.model import FrozenLM

SMOLLM2_135M = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                           num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                           tie_word_embeddings=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("way", choices=("eager", "regional", "whole"))
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--mode", help="torch.compile mode, e.g. reduce-overhead")
    args = p.parse_args()
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    model = LlamaForCausalLM(SMOLLM2_135M).to(args.device, dtype).eval().requires_grad_(False)
    if args.way == "whole":
        model = torch.compile(model, dynamic=True, mode=args.mode)
    elif args.way == "regional":
        spec = f"inductor:{args.mode}" if args.mode else "inductor"
        model = FrozenLM(model, None, "random SmolLM2-135M", compile=spec).for_steps().forward
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else lambda: None

    def step(batch: int) -> float:
        z = torch.randn(batch, 66, 576, device=args.device, requires_grad=True)
        targets = torch.randint(0, 49152, (batch * 64,), device=args.device)
        sync()
        started = time.perf_counter()
        logits = model(inputs_embeds=z.to(dtype), use_cache=False).logits[:, 2:].float()
        torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets).backward()
        sync()
        return time.perf_counter() - started

    row = {"way": args.way, "dtype": args.dtype, "mode": args.mode, "device": args.device}
    for batch in (1, 8):
        row[f"first_b{batch}"] = round(step(batch), 3)
        row[f"step_b{batch}"] = round(statistics.median(step(batch) for _ in range(8)), 4)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
