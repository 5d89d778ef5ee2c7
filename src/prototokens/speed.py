"""Timing one-pass decoding against greedy autoregressive generation, side by side."""

from __future__ import annotations

import statistics
import time

import torch

from .decode import decode_ids
from .model import FrozenLM
from .proto import ProtoTokens


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        started = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


@torch.inference_mode()
def greedy_generate(lm: FrozenLM, n_tokens: int, batch: int = 1) -> torch.Tensor:
    """N new tokens by greedy decoding with a KV cache, from the BOS token."""
    start = lm.model.config.bos_token_id or lm.tokenizer.bos_token_id or 0
    ids = torch.full((batch, 1), start, device=lm.device)
    return lm.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n_tokens,
                             min_new_tokens=n_tokens, do_sample=False, use_cache=True,
                             pad_token_id=lm.tokenizer.pad_token_id or 0)


def time_decode(lm: FrozenLM, proto: ProtoTokens, repeats: int = 5) -> dict:
    """Median seconds of one-pass decoding of ``proto`` and of greedy generation of as many tokens."""
    n = max(t.n_tokens for t in proto.texts)
    one_pass = _median_seconds(lambda: decode_ids(lm, proto), repeats)
    greedy = _median_seconds(lambda: greedy_generate(lm, n, batch=len(proto)), max(1, repeats // 2))
    return {"one_pass_s": one_pass, "greedy_s": greedy, "ratio": greedy / one_pass,
            "repeats": repeats, "n_tokens": n, "batch": len(proto)}
