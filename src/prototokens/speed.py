"""Timing one-pass decoding against greedy autoregressive generation, side by side."""

from __future__ import annotations

import statistics
import time

import torch

from .decode import decode_ids
from .model import FrozenLM
from .proto import ProtoTokens


def _seconds(fn, repeats: int) -> list[float]:
    """Wall times of ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        started = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return times


def greedy_generate(lm: FrozenLM, n_tokens: int, batch: int = 1) -> torch.Tensor:
    """N new tokens by greedy decoding with a KV cache, from the document-start token."""
    return lm.greedy_batch(lm.start_embedding().expand(batch, 1, -1), n_tokens)


def time_decode(lm: FrozenLM, proto: ProtoTokens, repeats: int = 5) -> dict:
    """One-pass decoding of all of ``proto`` against greedy generation of as many tokens, batched alike.

    Medians and spreads (min, max) in seconds, throughput in reconstructed tokens per second.
    """
    n = max(t.n_tokens for t in proto.texts)
    one_pass = _seconds(lambda: decode_ids(lm, proto, batch_size=len(proto)), repeats)
    greedy = _seconds(lambda: greedy_generate(lm, n, batch=len(proto)), max(1, repeats // 2))
    tokens = sum(t.n_tokens for t in proto.texts)
    row = {"n_tokens": n, "batch": len(proto), "repeats": repeats}
    for name, times in (("one_pass", one_pass), ("greedy", greedy)):
        median = statistics.median(times)
        row |= {f"{name}_s": median, f"{name}_min_s": min(times), f"{name}_max_s": max(times),
                f"{name}_tokens_per_s": tokens / median}
    return row | {"ratio": row["greedy_s"] / row["one_pass_s"]}
