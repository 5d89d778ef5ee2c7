"""What every study shares: its contract, the config conventions, the texts it runs on, and
the fit-and-record step.

A study is a module with ``NAME``, ``HELP``, a ``Config`` dataclass (each field with help text,
checks in ``__post_init__``), ``run(lm, config, folder)`` that writes records as it goes and
resumes, and ``report(folder)`` that writes ``NAME.md`` and its plots from what the folder holds.
``run`` saves the config as ``study.json``, which is how ``report`` (and ``prototokens report``)
knows the study. Registered once in ``prototokens.studies.STUDIES``, it gets its CLI subcommand
from the fields of its config.

Under torchrun, a study whose module sets ``SHARDED = True`` gives each rank a share of its
units (``distributed.shard``) and calls ``RunFolder.gather`` at the end of each run folder;
the command line runs any other study on rank 0 alone while the other ranks wait.
"""

from __future__ import annotations

import json
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from ..data.passages import Passage
from ..errors import PrototokensError
from ..layout import DEFAULT_LAYOUT, Arrangement, get_layout, resolve_layout
from ..metrics import h_lm, nats_to_bits, quality
from ..model import FrozenLM
from ..optimize import Fit, optimize
from ..recipe import Recipe
from ..records import RunFolder, key_of

THRESHOLD = 0.99  # the accuracy at which a text counts as reconstructed
SOURCE_HELP = "books[:NAMES], generated[:NAMES], random, FILE.txt, FILE.jsonl, hf:DATASET[:CONFIG]"


def option(default=MISSING, help: str = "", **cli):
    """A config field with its help text; ``cli`` says how the command line shows it
    (``positional=True``, ``nargs``, ``positive=True`` for whole numbers >= 1, ``choices``, ``cli=False``)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **cli})
    return field(default=default, metadata={"help": help, **cli})


def check_positive(config) -> None:
    """Refuse a field marked ``positive`` that is not a whole number >= 1 (None only where it is the default)."""
    for f in fields(config):
        value = getattr(config, f.name)
        if f.metadata.get("positive") and (not isinstance(value, int) or value < 1) and not (value is None is f.default):
            raise PrototokensError(f"{f.name} must be a whole number >= 1, got {value!r}")


@dataclass(kw_only=True)
class StudyConfig:
    """Settings every study takes; the command line fills them from its model and recipe options."""

    recipe: "str | Recipe | None" = option(None, "the recipe (a name or a Recipe; None: the layout's default)", cli=False)
    overrides: dict = option({}, "recipe fields to change (the command line's --steps, --lr, ...)", cli=False)
    layout: str = option(DEFAULT_LAYOUT, "the arrangement of e and m", cli=False)
    progress: bool = option(True, "show progress bars", cli=False)

    def __post_init__(self):
        self.recipe = self.arrangement.recipe(self.recipe).with_overrides(**self.overrides)
        check_positive(self)

    @property
    def arrangement(self) -> Arrangement:
        """What the study trains (the layout named by ``layout``)."""
        return get_layout(self.layout)

    def to_dict(self) -> dict:
        """JSON-ready, as ``study.json`` holds it."""
        out = asdict(self) | {"recipe": self.recipe.to_dict()}
        out.pop("progress")
        out.pop("overrides")
        return json.loads(json.dumps(out, default=str))


@dataclass(kw_only=True)
class SampledConfig(StudyConfig):
    """A study of texts sampled from a source."""

    source: str = option("books", SOURCE_HELP)
    data_seed: int = option(0, "seed of the passage sample")


def names(values: list[str], allowed, what: str) -> list[str]:
    """``values`` if each is one of ``allowed``; else an error naming the choices."""
    unknown = [x for x in values if x not in allowed]
    if unknown or not values:
        raise PrototokensError(f"unknown {what} {', '.join(map(str, unknown)) or '(none given)'}; "
                               f"choose from: {', '.join(map(str, allowed))}")
    return list(values)


def save_config(folder: "str | Path", name: str, config: StudyConfig) -> Path:
    """Write ``study.json``: which study the folder holds and its settings."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "study.json"
    path.write_text(json.dumps({"study": name, "config": config.to_dict()}, indent=1, sort_keys=True) + "\n")
    return path


def read_config(folder: "str | Path") -> dict:
    """The ``study.json`` of a study folder ({} for a folder of capacity runs)."""
    path = Path(folder) / "study.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def write_markdown(folder: "str | Path", name: str, body: str) -> Path:
    path = Path(folder) / f"{name}.md"
    path.write_text(body)
    return path


@dataclass
class Text:
    """A target for a sweep: a stable id, its ids (at least the largest length), and where it came from."""

    id: str
    target_ids: list[int]
    meta: dict

    @classmethod
    def from_passage(cls, p: Passage) -> "Text":
        """The sampled passage ``p``, its id naming text, offset and index (as run folders record it)."""
        return cls(f"{p.text_name}@{p.char_offset}#{p.index}", p.target_ids,
                   {k: v for k, v in p.to_dict().items() if k not in ("target_ids", "context_ids")})


def sample(lm: FrozenLM, config: SampledConfig, n_texts: int, n_tokens: int, context_tokens: int = 64) -> list[Text]:
    """The study's texts from its source."""
    from ..data import sample_passages

    passages = sample_passages(lm, config.source, n_texts, n_tokens, seed=config.data_seed, context_tokens=context_tokens)
    return [Text.from_passage(p) for p in passages]


def unit(lm: FrozenLM, run_folder: RunFolder, batch: list[Text], n: int, seed: int, *, shared: str | None,
         recipe: Recipe, layout: "str | Arrangement", progress: bool) -> list[dict]:
    """Records of ``batch`` at length ``n`` and ``seed``: read back if done, else optimised now.

    ``shared`` names the vector the batch shares (then the batch is one group and one unit).
    Each record also holds what the layout says of reconstruction (for the cramming baseline,
    free-running generation, whose accuracy is the one that counts) and how the text it writes
    reads beside the target (:func:`~prototokens.metrics.quality`)."""
    group = key_of([t.id for t in batch]) if shared else None
    keys = [key_of(t.id, n, seed, group) for t in batch]
    if all(k in run_folder.done for k in keys):
        return [r for r in run_folder.records if r["key"] in keys]
    todo = [(t, k) for t, k in zip(batch, keys) if shared or k not in run_folder.done]
    # the batch's texts done before (a run grown by texts, a kill mid-append) count as they were
    earlier = [] if shared else [r for r in run_folder.records if r["key"] in keys]
    targets = [t.target_ids[:n] for t, _ in todo]
    started = time.perf_counter()
    fit = optimize(lm, targets, layout=layout, recipe=recipe, seed=seed, shared=shared, progress=progress)
    records = describe(lm, fit, [t for t, _ in todo], targets, [k for _, k in todo], layout=layout, seed=seed,
                       group=group, seconds=time.perf_counter() - started)
    for record in records:
        if record["key"] not in run_folder.done:
            run_folder.append(record)
    return earlier + records


def describe(lm: FrozenLM, fit: Fit, texts: list[Text], targets: list[list[int]], keys: list[str], *,
             layout: "str | Arrangement", seed: int, group: str | None, seconds: float) -> list[dict]:
    """One record per text of ``fit``: its outcome, what the layout says of reconstruction, and
    how the text it writes reads beside its target."""
    reconstructed = resolve_layout(layout).reconstruction(lm, fit, targets)
    records = []
    for i, (t, key, target, outcome) in enumerate(zip(texts, keys, targets, fit.outcomes)):
        nats = h_lm(lm, target)
        record = outcome.to_dict() | {
            "key": key, "text": t.id, "length": len(target), "seed": seed, "group": group,
            "h_lm_nats": nats, "h_lm_bits": nats_to_bits(nats), "seconds": seconds, "batch": len(texts),
            "meta": t.meta} | reconstructed[i] | quality(lm, reconstructed[i]["decoded_ids"], target)
        counted = counted_accuracy(record)
        records.append(record | {"pass_accuracy": outcome.accuracy, "accuracy": counted,
                                 "c_tokens": round(counted * len(target))})
    return records


def counted_accuracy(record: dict) -> float:
    """The accuracy a record's text counts at: the lower of the optimiser's one pass (in its
    compute dtype; ``pass_accuracy``) and of the ids the record writes (its layout's
    reconstruction, in the model's load dtype: ``wrong_positions``), so a length passes only
    where both read it. A record older than its wrong positions counts its pass alone."""
    if "wrong_positions" not in record:
        return record["accuracy"]
    return min(record["accuracy"], 1 - len(record["wrong_positions"]) / record["length"])
