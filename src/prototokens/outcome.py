"""How the optimisation of one text ended: one dataclass for the optimiser's result, the proto
file's records and the run records of the studies."""

from __future__ import annotations

from dataclasses import asdict, dataclass

SOLVED, UNSOLVED, FAILED = "solved", "unsolved", "failed"


@dataclass
class Outcome:
    """One text's kept state, as the optimiser judged it."""

    accuracy: float  # token accuracy of one forward pass (teacher-forced for cramming)
    loss: float  # mean cross-entropy per target token (nats), unweighted
    margin: float  # smallest lead of the target logit over the runner-up
    steps: int  # updates from the start of the kept seed to the kept state
    total_steps: int  # updates spent on the text over all seeds
    seed: int  # the seed of the kept state
    status: str  # SOLVED, UNSOLVED or FAILED (non-finite loss)
    elapsed: float = 0.0  # wall seconds from the start of optimize to the kept state
    # the weight dtype of the pass that read accuracy, loss and margin: the recipe's compute dtype
    # as this hardware resolves it ("auto": bfloat16 where native, else float32); None in records
    # older than this field
    dtype: str | None = None
    start: int = 0  # which of its seed's raced starts (Recipe.starts) the kept state grew from

    @property
    def solved(self) -> bool:
        return self.status == SOLVED

    @classmethod
    def unsolved(cls) -> "Outcome":
        """The state before any step: worse than anything the optimiser will offer."""
        return cls(-1.0, float("inf"), float("-inf"), 0, 0, 0, UNSOLVED)

    def to_dict(self) -> dict:
        return asdict(self)
