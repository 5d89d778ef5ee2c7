"""Optimiser recipes: the paper's, kept as a preset, and our default.

A preset carries a version, and whatever records a recipe (run folders, proto files) records its
version with it: when a preset changes, its version goes up, so results made with the old one
keep their meaning. Records written before recipes carried versions (or an optimiser name) read
as the fields they hold, and the defaults for the fields they lack.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, fields, replace

from .errors import PrototokensError
from .model import DTYPES
from .optimizers import OPTIMIZERS

OFF = "off"  # an override that unsets an optional field (Recipe.with_overrides)
INITS = ("normal", "embedding-std", "start", "uniform-0.02")
SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class Recipe:
    """AdamW on (e, m) and when to stop. ``margin`` asks the right logit to lead by that much."""

    name: str
    lr: float
    betas: tuple[float, float]
    weight_decay: float
    max_steps: int  # 0: the start is only scored (e.g. an encoder's guess, decoded as it is)
    # "normal": N(0, 1), the paper; "embedding-std": N(0, std(embeddings)^2);
    # "start": e starts as the embedding of the model's document-start token (FrozenLM.start_id:
    # the attention sink the model is used to at position 0), m as embedding-std;
    # "uniform-0.02": U[0, 0.02) in every coordinate (progressive_cramming's "random0.02")
    init: str
    schedule: str = "constant"
    warmup: int = 0
    margin: float = 0.0
    first_weight: float = 1.0  # weight of the first target's cross-entropy in the text's loss
    patience: int | None = None  # give up a seed after this many steps without a better accuracy
    eps: float = 1e-8
    optimizer: str = "adamw"  # a name in optimizers.OPTIMIZERS
    version: int = 1  # of the preset ``name``; raised whenever a preset's values change
    # weights the forward and backward run in (e and m stay float32); "auto": bfloat16 where the
    # hardware computes it natively (a CUDA GPU with bf16, a CPU with AVX512-BF16 or AMX), where
    # a step costs about half a float32 one or less, else float32 (CPUs without bf16 units
    # emulate it, about 6x slower than float32)
    dtype: str = "float32"
    # a text counts as solved only when one forward pass in each of these weight dtypes writes
    # it exactly, with every target leading by ``margin`` there too, so its file decodes the
    # same in float32 and bfloat16
    check_dtypes: tuple[str, ...] = ()
    # once one pass in the compute dtype writes a text exactly, its objective adds the
    # cross-entropy of one pass in each other check dtype whose pass is cheap (FrozenLM.cheap), so the
    # optimiser aims at what the stop asks for (exact in every check dtype) instead of hoping
    # the compute dtype's solution carries over
    polish: bool = False
    # polish trains through a check dtype only while its pass misses a target or the margin: a
    # step whose other passes already read the text as the stop asks skips their backward
    lazy_polish: bool = False
    temperature: float = 1.0  # the objective's cross-entropy is taken on logits / temperature
    lr_floor: float = 0.05  # the cosine schedule ends at lr * lr_floor
    # focal objective (Lin et al. 2017): each target's cross-entropy times (1 - p)^focus, so
    # targets already written well weigh less; 0 is plain cross-entropy
    focus: float = 0.0
    # the focal exponent fades as a text is written: focus x (1 - the text's accuracy), so the
    # last wrong tokens and the margin are chased with (nearly) plain cross-entropy
    focus_fade: bool = False
    # lr (and so its schedule) in units of the model's embedding std: AdamW moves a coordinate
    # about lr a step whatever the gradient's scale, so one absolute lr moves e and m of a model
    # with larger input embeddings relatively less (Gemma's spread 7.6x SmolLM2's)
    relative_lr: bool = False
    # max_steps and patience are for a text of up to this many tokens; a longer text gets both
    # times its length over this, so its cosine stretches with it (None: the same for every length)
    budget_tokens: int | None = None
    # starts raced per text: each seed runs this many starts side by side (a batch row each) for
    # ``race_steps`` steps, then only the most advanced (best accuracy, then lowest loss) goes on;
    # a start that solves its text first ends the race at once. A failed start then costs its
    # text race_steps, not patience (a collapse is plain by then); the price is the rows it adds
    # to the batch while the race lasts. 1: one start a seed. Texts sharing a vector start once.
    starts: int = 1
    # the same at every length: at 64 tokens the start ahead at step 100 was the one that went on
    # to solve on 10 of 10 texts, where 50 steps picked 8 (bench/early_stop.py --race)
    race_steps: int = 100
    # texts of at most this many tokens run one start a seed whatever ``starts`` says: short texts
    # seldom lose a first seed, and a race would cost them up to ``starts`` times their solve
    race_above: int = 0
    # beta of an exponential moving average of each row's vectors that the optimiser never sees:
    # every 10 steps the average is read like the iterate, and a text is solved by whichever of
    # the two is solved first; 0: off (no preset uses it: at 64 tokens it saved 1.1 % of the
    # steps, bench/RESULTS.md)
    average: float = 0.0
    # (S, A): give a seed up at step S if its best accuracy is still below A (S for a text of
    # budget_tokens, scaled with the length beyond like patience); only where starts race (beyond
    # race_above). A seed that climbs this slowly at 64 tokens did not solve (bench/RESULTS.md)
    pace: tuple[int, float] | None = None

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise PrototokensError(f"unknown optimizer {self.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}")
        for dtype in (self.dtype, *self.check_dtypes):
            if dtype not in DTYPES and dtype != "auto":
                raise PrototokensError(f"unknown dtype {dtype!r}; choose one of: {', '.join(DTYPES)}")
        if self.init not in INITS:
            raise PrototokensError(f"unknown init {self.init!r}; choose one of: {', '.join(INITS)}")
        if self.schedule not in SCHEDULES:
            raise PrototokensError(f"unknown schedule {self.schedule!r}; choose one of: {', '.join(SCHEDULES)}")
        if not (self.lr > 0 and self.max_steps >= 0 and self.warmup >= 0 and self.margin >= 0):
            raise PrototokensError("lr must be positive; steps, warmup and margin not negative")
        if not (self.temperature > 0 and 0 <= self.lr_floor <= 1 and self.focus >= 0):
            raise PrototokensError("temperature must be positive, lr_floor in [0, 1] and focus not negative")
        if self.lazy_polish and not self.polish:
            raise PrototokensError("lazy_polish makes polish lazy: it needs polish on")
        if self.focus_fade and not self.focus:
            raise PrototokensError("focus_fade fades the focal objective: it needs a focus above 0")
        if self.starts < 1 or self.race_steps < 1:
            raise PrototokensError(f"starts and race_steps must be at least 1, got {self.starts} and {self.race_steps}")
        if self.pace is not None and not (self.pace[0] >= 1 and 0 < self.pace[1] <= 1):
            raise PrototokensError(f"pace is (step, accuracy): a step of at least 1 and an accuracy in (0, 1], got {self.pace}")
        if self.budget_tokens is not None and self.budget_tokens < 1:
            raise PrototokensError(f"budget_tokens must be at least 1, got {self.budget_tokens}")
        if not all(0 <= b < 1 for b in (*self.betas, self.average)):
            raise PrototokensError(f"betas and average must lie in [0, 1), got {self.betas} and {self.average}")

    def lr_at(self, step: int) -> float:
        """Learning rate for the 1-based update ``step``."""
        if step <= self.warmup:
            return self.lr * step / (self.warmup + 1)
        if self.schedule == "constant":
            return self.lr
        progress = min(1.0, (step - self.warmup) / max(1, self.max_steps - self.warmup))
        return self.lr * (self.lr_floor + (1 - self.lr_floor) * 0.5 * (1 + math.cos(math.pi * progress)))

    def at_length(self, n_tokens: int) -> "Recipe":
        """The recipe a text of ``n_tokens`` runs: one start a seed and no pace up to
        ``race_above`` tokens; with ``budget_tokens``, a longer text's max_steps, patience and
        pace's step scaled by n_tokens / budget_tokens (the warm-up and the race's length stay)."""
        racing = self.starts > 1 or self.pace is not None
        recipe = replace(self, starts=1, pace=None) if n_tokens <= self.race_above and racing else self
        if recipe.budget_tokens is None or n_tokens <= recipe.budget_tokens:
            return recipe
        scale = n_tokens / recipe.budget_tokens
        return replace(recipe, max_steps=round(recipe.max_steps * scale), patience=None if recipe.patience is None else round(recipe.patience * scale),
                       pace=None if recipe.pace is None else (round(recipe.pace[0] * scale), recipe.pace[1]))

    def for_model(self, lm) -> "Recipe":
        """This recipe with its lr absolute for the FrozenLM ``lm``."""
        return replace(self, lr=self.lr * lm.embedding_std, relative_lr=False) if self.relative_lr else self

    def with_overrides(self, **changes) -> "Recipe":
        """This recipe with the given fields changed (None: keep; OFF: unset, e.g. ``patience=OFF``
        never gives a seed up); renamed NAME+custom if any differs."""
        changes = {k: None if isinstance(v, str) and v == OFF else v for k, v in changes.items() if v is not None}
        changes = {k: v for k, v in changes.items() if getattr(self, k) != v}
        if not changes:
            return self
        return replace(self, name=self.name if self.name.endswith("+custom") else f"{self.name}+custom", **changes)

    def to_dict(self) -> dict:
        return asdict(self) | {"betas": list(self.betas), "check_dtypes": list(self.check_dtypes),  # as JSON gives it back
                               "pace": None if self.pace is None else list(self.pace)}

    @classmethod
    def from_dict(cls, fields: dict) -> "Recipe":
        """The recipe :meth:`to_dict` wrote (e.g. the ``recipe`` of a run folder's settings)."""
        return cls(**fields | {"betas": tuple(fields["betas"]), "check_dtypes": tuple(fields.get("check_dtypes", ())),
                               "pace": None if fields.get("pace") is None else tuple(fields["pace"])})

    @property
    def objective(self) -> tuple[float, float, float, bool]:
        """What :func:`~prototokens.optimize.evaluate` shapes its objective with: first_weight,
        temperature, focus, focus_fade."""
        return self.first_weight, self.temperature, self.focus, self.focus_fade

    @property
    def label(self) -> str:
        """Name and version, as reports print it: ``fast v2``."""
        return label(self.to_dict())


def label(recipe: dict) -> str:
    """A recorded recipe's name and version; the name alone for records older than versions."""
    return f"{recipe['name']} v{recipe['version']}" if "version" in recipe else recipe["name"]


def steps(recipe: dict) -> str:
    """A recorded recipe's budget a seed, as reports print it: ``1000 steps``, or for one that
    scales with the length ``1000 steps to 32 tokens, scaled beyond``."""
    scaled = recipe.get("budget_tokens")
    return f"{recipe['max_steps']} steps" + (f" to {scaled} tokens, scaled beyond" if scaled else "")


def same_recipe(a: dict, b: dict) -> bool:
    """Whether two recorded recipes are one: a field a record lacks (written before the field
    existed) counts as its default, and the version counts only when both records name one."""
    defaults = {f.name: list(f.default) if isinstance(f.default, tuple) else f.default
                for f in fields(Recipe) if f.default is not MISSING and f.name != "version"}
    a, b = defaults | a, defaults | b
    if "version" not in a or "version" not in b:
        a, b = ({k: v for k, v in d.items() if k != "version"} for d in (a, b))
    return a == b


RECIPES = {
    "paper": Recipe("paper", lr=1e-2, betas=(0.9, 0.9), weight_decay=0.01, max_steps=5000, init="normal"),
    # Kuratov et al.'s settings for the cramming baseline (the optimiser of the paper, randn * std init)
    "cramming": Recipe("cramming", lr=1e-2, betas=(0.9, 0.9), weight_decay=0.01, max_steps=5000,
                       init="embedding-std", patience=2000),
    # v1 had lr 1e-2 (results/studies were made with it); v2: lr 3e-2 (results/capacity);
    # v3: the forward and backward in bf16 where the hardware has it, and a text stops only when
    # one pass in fp32 and one in bf16 write it with every target ahead by 0.3 logit (the largest
    # shift of a margin measured between two CPU kernel paths in bf16: bench/RESULTS.md);
    # v4: polish, so a text exact in bf16 also trains through fp32 until both write it (on 8
    # unselected 32-token texts: the same median steps, 25 % fewer in all, bench/RESULTS.md);
    # v5: lr 0.22 embedding stds (3e-2 on SmolLM2, 0.23 on Gemma-3, which v4 gave 3e-2 too);
    # v6: AdamW in the eigenbasis of each vector's gradient covariance (eigen-adamw; on two sets
    # of 8 unselected 32-token texts, 8 of 8 solved and 0.56-0.64x v4's median steps, bench/RESULTS.md);
    # v7: 1000 steps and patience 200 up to 32 tokens, scaled with the length beyond (at 64 tokens
    # v6 solved 3 of 6 texts, 2000 steps and patience 400 solved all 6: bench/RESULTS.md);
    # v8: beyond 32 tokens 4 starts a seed race for 100 steps (at 64 tokens on an AMX CPU, 6 of 6
    # solved, the first seed's survivor solving 4, where one start a seed solved 1: bench/RESULTS.md);
    # v9: where starts race, a seed whose best accuracy is below 0.5 at step 300 (600 at 64 tokens)
    # is given up (at 64 tokens first seeds that failed did so by climbing slowly: bench/RESULTS.md);
    # v10: e starts like m, N(0, std(embeddings)^2), for the default layout that became
    # start-em-plus-one with it (e behind the model's own start token; at 64 tokens on an AVX2 CPU,
    # 6 of 6 texts solved at 0.59x the equivalents of v9 on em-plus-one, which solved 5: bench/RESULTS.md);
    # v11: the objective's cross-entropy at temperature 0.5 (at 64 tokens on a Zen 5 CPU with bf16
    # steps, 12 of 12 texts solved by their first seed, where v10 needed a second on 2, at 0.78x
    # the equivalents in all and the same median: bench/RESULTS.md)
    "fast": Recipe("fast", version=11, optimizer="eigen-adamw", lr=0.22, relative_lr=True, betas=(0.9, 0.99),
                   weight_decay=0.01, max_steps=1000, budget_tokens=32, starts=4, race_above=32,
                   init="embedding-std", schedule="cosine", first_weight=4.0, patience=200, dtype="auto",
                   check_dtypes=("float32", "bfloat16"), margin=0.3, polish=True, pace=(300, 0.5), temperature=0.5),
    # FusionBrainLab/progressive_cramming's settings for its paper runs (README, "Reproducing the
    # paper experiments"): lr 0.1 (betas and weight decay are its defaults), 100 warm-up steps,
    # cosine to 1e-3, 10000 steps per text in all; for progressive.py, whose stages run on one schedule
    "progressive": Recipe("progressive", lr=0.1, betas=(0.9, 0.9), weight_decay=0.01, max_steps=10000,
                          init="uniform-0.02", schedule="cosine", warmup=100, lr_floor=0.01),
}
DEFAULT_RECIPE = "fast"
# what each earlier version of a preset set otherwise, so that NAME@VERSION (fast@3) rebuilds it:
# a run started under an old version resumes with it after the preset has moved on
T1 = {"temperature": 1.0}
START = T1 | {"init": "start"}
PACELESS = START | {"pace": None}
ONE_START = PACELESS | {"starts": 1, "race_above": 0}
FIXED = ONE_START | {"budget_tokens": None}
ADAMW = FIXED | {"optimizer": "adamw"}
ABSOLUTE = ADAMW | {"lr": 3e-2, "relative_lr": False}
EARLIER = {"fast": {
    10: T1,
    9: START,
    8: PACELESS,
    7: ONE_START,
    6: FIXED,
    5: ADAMW,
    4: ABSOLUTE,
    3: ABSOLUTE | {"polish": False},
    2: ABSOLUTE | {"dtype": "float32", "check_dtypes": (), "margin": 0.0, "polish": False},
    1: ABSOLUTE | {"dtype": "float32", "check_dtypes": (), "margin": 0.0, "polish": False, "lr": 1e-2},
}}


def get_recipe(recipe: "str | Recipe") -> Recipe:
    """A preset by name, NAME@VERSION for an earlier version of it, or a Recipe as it is."""
    if isinstance(recipe, Recipe):
        return recipe
    name, _, version = recipe.partition("@")
    if name not in RECIPES:
        raise PrototokensError(f"unknown recipe {recipe!r}; choose one of: {', '.join(RECIPES)} (NAME@VERSION for an earlier version)")
    preset = RECIPES[name]
    if not version or version == str(preset.version):
        return preset
    earlier = EARLIER.get(name, {})
    if not version.isdigit() or int(version) not in earlier:
        known = ", ".join(map(str, sorted([*earlier, preset.version])))
        raise PrototokensError(f"recipe {name} has no version {version!r}; it has: {known}")
    return replace(preset, version=int(version), **earlier[int(version)])
