"""Arrangements of the two proto-tokens e and m (Table 1 of the paper), and the protocol every
arrangement of trainable vectors follows (the cramming baseline's too).

A layout turns N target tokens into a row of input slots, each slot holding e or m, and says
which output position predicts which target: output ``offset + i`` predicts target ``t_i``.
Everything else (building Z, reading logits) is derived from these two facts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch

from .errors import PrototokensError

if TYPE_CHECKING:
    from .model import FrozenLM
    from .optimize import Fit
    from .recipe import Recipe

E, M, S = 0, 1, 2  # slot kinds: e, m, and the model's document-start token (fixed, FrozenLM.start_id)


@runtime_checkable
class Arrangement(Protocol):
    """Trainable vectors placed among a model's inputs: what the optimiser, the decoder and the
    metrics need to know of a layout, and all they ask of it."""

    name: str
    vectors: dict[str, tuple]  # trainable vector name -> its shape per text, before d

    def n_inputs(self, n: int) -> int:
        """Input positions for a text of ``n`` target tokens."""

    def inputs(self, vectors: dict[str, torch.Tensor], targets: list[list[int]], lm: "FrozenLM") -> torch.Tensor:
        """Z (B, L, d) for the texts ``targets``, from their rows of ``vectors``, right-padded."""

    def outputs(self, n: int) -> slice:
        """The output positions that predict targets t_0 .. t_{n-1}, in order: the one place
        that says which output predicts which target."""

    def recipe(self, recipe: "str | Recipe | None") -> "Recipe":
        """The recipe to train with: ``recipe``, or this arrangement's default when None."""

    def describe(self) -> dict:
        """What a run folder's settings record of this arrangement."""

    def reconstruction(self, lm: "FrozenLM", fit: "Fit", targets: list[list[int]]) -> list[dict]:
        """Per text, what reconstructing it from the trained vectors gives beyond the optimiser's
        one-pass outcome: fields for its record, ``decoded_ids`` (the ids it writes) among them,
        whose ``accuracy`` (if any) is the one that counts."""


@dataclass(frozen=True)
class Layout:
    name: str
    pattern: str
    slots: Callable[[int], list[int]]  # N -> E/M per input position
    offset: int  # output position offset + i predicts target i

    vectors = {"e": (), "m": ()}  # trainable vectors, each of shape (*shape, d) per text

    def n_inputs(self, n: int) -> int:
        return n + self.offset

    def inputs(self, vectors: dict, targets: list[list[int]], lm: "FrozenLM | None" = None) -> torch.Tensor:
        """Z for the optimiser: the targets only set the lengths."""
        return self.build(vectors["e"], vectors["m"], [len(t) for t in targets], lm)

    @property
    def fixed_start(self) -> bool:
        """Whether a slot holds the model's document-start token (so building Z needs the model)."""
        return S in self.slots(1)

    def build(self, e: torch.Tensor, m: torch.Tensor, lengths: list[int], lm: "FrozenLM | None" = None) -> torch.Tensor:
        """Stack rows of slots into Z (B, L, d), right-padded with m; ``lm`` gives the start
        token's embedding where a slot holds it.

        Right padding needs no attention mask: with a causal mask an output never sees a
        later input, so padding cannot change the outputs that predict targets.
        """
        width = max(self.n_inputs(n) for n in lengths)
        index = torch.full((len(lengths), width), M, dtype=torch.long)
        for row, n in enumerate(lengths):
            index[row, : self.n_inputs(n)] = torch.tensor(self.slots(n))
        kinds = [e, m]
        if self.fixed_start:
            if lm is None:
                raise PrototokensError(f"layout {self.name} holds the model's document-start token: building its inputs needs the model")
            kinds.append(lm.start_embedding().to(e.device, e.dtype).expand_as(e))
        em = torch.stack(kinds, dim=1)  # (B, kinds, d)
        index = index.to(em.device).unsqueeze(-1).expand(-1, -1, em.shape[-1])
        return torch.gather(em, 1, index)

    def outputs(self, n: int) -> slice:
        return slice(self.offset, self.offset + n)

    def recipe(self, recipe: "str | Recipe | None") -> "Recipe":
        from .recipe import DEFAULT_RECIPE, get_recipe

        return get_recipe(recipe or DEFAULT_RECIPE)

    def describe(self) -> dict:
        return {"study": "capacity", "layout": self.name}

    @torch.inference_mode()
    def reconstruction(self, lm: "FrozenLM", fit: "Fit", targets: list[list[int]]) -> list[dict]:
        """The ids of the one forward pass the optimiser scored (argmax at each target's output),
        as ``decode`` writes them: in the model's own dtype. One text at a time, to keep the
        logits small."""
        rows = []
        for k, target in enumerate(targets):
            vectors = {name: v[k if v.shape[0] > 1 else 0][None] for name, v in fit.vectors.items()}
            logits = lm.logits(self.inputs(vectors, [target], lm).to(lm.device))[0, self.outputs(len(target))]
            rows.append({"decoded_ids": logits.argmax(-1).tolist()})
        return rows


LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout("em", "[e][m]x(N-1)", lambda n: [E] + [M] * (n - 1), 0),
        Layout("e-only", "[e]xN", lambda n: [E] * n, 0),
        Layout("halves", "[e]xN/2 [m]xN/2", lambda n: [E] * ((n + 1) // 2) + [M] * (n // 2), 0),
        Layout("alternating", "[e,m]xN/2", lambda n: [E, M] * (n // 2) + [E] * (n % 2), 0),
        Layout("em-plus-one", "[e][m]xN, e's output unused", lambda n: [E] + [M] * n, 1),
        # the model's own attention sink at position 0, e and m after it (bench/RESULTS.md: where
        # e sits at position 0, a bf16 pass misreads 64-token states that fp32 writes exactly)
        Layout("start-em-plus-one", "[start][e][m]xN, the outputs of start and e unused", lambda n: [S, E] + [M] * n, 2),
    )
}
DEFAULT_LAYOUT = "start-em-plus-one"  # the paper's default is "em"; see the README for why not ours


def get_layout(name: str) -> Layout:
    try:
        return LAYOUTS[name]
    except KeyError:
        raise PrototokensError(
            f"unknown layout {name!r}; choose one of: {', '.join(LAYOUTS)}"
        ) from None


def resolve_layout(layout: "str | Arrangement") -> Arrangement:
    """A layout given by name, or any arrangement as it is."""
    return get_layout(layout) if isinstance(layout, str) else layout
