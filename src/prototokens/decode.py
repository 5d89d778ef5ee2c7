"""Decoding: one forward pass over the proto-token layout, argmax at every target position.

Rows from any number of ProtoTokens (and layouts) go through the model together, right-padded;
a causal mask means padding never reaches the outputs that are read. In a 16-bit dtype they go
one at a time: there a batch's shape moves logits (FrozenLM.batch_invariant).
"""

from __future__ import annotations

import torch

from .layout import get_layout
from .model import FrozenLM
from .proto import ProtoTokens


@torch.inference_mode()
def decode_ids(lm: FrozenLM, protos: "ProtoTokens | list[ProtoTokens]", batch_size: int | None = None) -> list[list[int]]:
    """Token ids written by one forward pass for every text of every ``protos``, ``batch_size``
    rows at a time (default: 64 where a row's logits do not depend on its batch, float32; else 1,
    so that a text reads the same whatever is decoded with it)."""
    batch_size = batch_size or (64 if lm.batch_invariant else 1)
    protos = [protos] if isinstance(protos, ProtoTokens) else list(protos)
    for p in protos:
        p.check_model(lm)
    rows = [(get_layout(p.layout), *p.vectors(i), t.n_tokens) for p in protos for i, t in enumerate(p.texts)]
    out = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start: start + batch_size]
        zs = [layout.build(e[None], m[None], [n], lm)[0] for layout, e, m, n in chunk]
        z = torch.nn.utils.rnn.pad_sequence(zs, batch_first=True).to(lm.device)
        predicted = lm.logits(z).argmax(-1).cpu()
        out += [predicted[k, layout.outputs(n)].tolist() for k, (layout, _, _, n) in enumerate(chunk)]
    return out


def decode(lm: FrozenLM, protos: "ProtoTokens | list[ProtoTokens]") -> list[str]:
    """Texts written by one forward pass for every text of every ``protos``."""
    return [lm.detokenize(ids) for ids in decode_ids(lm, protos)]
