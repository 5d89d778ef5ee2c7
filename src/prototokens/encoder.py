"""A learned encoder into proto-token space: a text's (e, m) from one read of the frozen LM and a small head.

The frozen LM reads the text (no gradient reaches its weights); a small trainable head (a
projection of one hidden layer, ``layers`` transformer layers, then attention pooling with one
learned query per predicted vector) adds a correction to a learned start vector. It is trained
end to end on the one-pass reconstruction loss through the same frozen LM, so no precomputed
solutions are needed (they are not unique: two seeds give near-orthogonal m). ``predict`` picks
the variant: ``em`` predicts e and m; ``e`` learns one m per model and predicts e; ``m`` keeps
e at the document-start token (where ``fast`` up to v9 started it, an attention sink) and
predicts m; ``none`` learns one (e, m) for all texts, the best text-independent start (the floor
to beat).

Training passages come from a source's texts split by text (books: by book; one work in two
collections stays on one side), so that held-out passages come from texts the encoder never
saw; the split is recorded in the encoder's file. A training folder holds ``encoder.safetensors``
(the weights, with the config, the LM's fingerprint and the split as JSON metadata, copied to
``encoder.json``), ``checkpoint.safetensors`` (weights and optimiser state, to resume),
``snapshots/step-S.safetensors`` (an encoder every ``checkpoint_every`` steps, for a curve
against training time) and ``log.jsonl`` (per step: loss, accuracy; at each checkpoint: the
zero-shot accuracy on held-out passages).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from .data import SAME_WORK, sample_passages, text_names
from .errors import PrototokensError
from .layout import DEFAULT_LAYOUT, get_layout
from .model import FrozenLM
from .optimize import evaluate
from .proto import check_model, read_safetensors, save_atomic
from .recipe import DEFAULT_RECIPE, get_recipe
from .studies.common import SOURCE_HELP, check_positive, option

log = logging.getLogger(__name__)

FORMAT, FORMAT_VERSION = "prototokens-encoder", 1
PREDICT = {"em": ("e", "m"), "e": ("e",), "m": ("m",), "none": ()}  # variant -> the vectors read from the text
FIXED = {"m": ("e",)}  # variant -> start vectors it keeps where they start


@dataclass(kw_only=True)
class Config:
    """What an encoder is and how it is trained."""

    source: str = option("books", f"texts to train on, split by text: {SOURCE_HELP.replace('random, ', '')}")
    tokens: list[int] = option([32], "passage lengths N; batches take them in turn, and the encoder serves up to the largest")
    held_out: int = option(4, "texts (books) held out of training, picked by seed; evaluation passages come from them", positive=True)
    passages: int = option(2000, "training passages", positive=True)
    val_passages: int = option(16, "held-out passages scored zero-shot at each checkpoint", positive=True)
    steps: int = option(2000, "training steps (a rerun with more resumes the run)", positive=True)
    batch_size: int = option(16, "passages per step", positive=True)
    lr: float = option(1e-3, "AdamW learning rate of the head")
    warmup: int = option(50, "steps of linear learning-rate warmup")
    checkpoint_every: int = option(100, "steps between checkpoints (each also kept as a snapshot)", positive=True)
    seed: int = option(0, "seed of the split, the passages, the batches and the initial weights")
    predict: str = option("em", "em: e and m from the text; e: m learned once per model, e from the text; "
                                "m: e at the document-start token, m from the text; none: one (e, m) for all texts")
    layer: int = option(-1, "hidden layer the head reads (0: the input embeddings; -1: the middle layer)")
    width: int = option(256, "width of the head", positive=True)
    heads: int = option(4, "attention heads of the head", positive=True)
    layers: int = option(1, "transformer layers of the head over the hidden states (0: pooling only)")

    def __post_init__(self):
        if self.predict not in PREDICT:
            raise PrototokensError(f"unknown predict {self.predict!r}; choose one of: {', '.join(PREDICT)}")
        if not self.tokens or any(not isinstance(n, int) or n < 1 for n in self.tokens):
            raise PrototokensError(f"tokens must be whole numbers >= 1, got {self.tokens!r}")
        check_positive(self)
        if self.batch_size > self.passages:
            raise PrototokensError(f"batch_size ({self.batch_size}) must not exceed passages ({self.passages})")
        if not (self.lr > 0 and self.warmup >= 0 and self.layers >= 0 and self.layer >= -1):
            raise PrototokensError("lr must be positive, warmup and layers not negative, layer >= -1")
        if self.width % self.heads:
            raise PrototokensError(f"width ({self.width}) must be a multiple of heads ({self.heads})")


class Encoder(nn.Module):
    """Text ids -> proto-tokens (e, m), for the default layout of one frozen LM."""

    def __init__(self, config: Config, meta: dict, start: dict[str, torch.Tensor]):
        super().__init__()
        self.config, self.meta = config, meta  # meta: model, layout, scale, read layer, training
        fixed = FIXED.get(config.predict, ())
        self.start = nn.ParameterDict({name: nn.Parameter(v.clone(), requires_grad=name not in fixed)
                                       for name, v in start.items()})
        predicted, d, w = PREDICT[config.predict], meta["model"]["d_model"], config.width
        if predicted:
            self.read = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, w))
            self.position = nn.Parameter(torch.zeros(max(config.tokens), w))
            block = nn.TransformerEncoderLayer(w, config.heads, 2 * w, dropout=0.0, batch_first=True, norm_first=True)
            self.blocks = nn.TransformerEncoder(block, config.layers, enable_nested_tensor=False)
            self.queries = nn.Parameter(torch.randn(len(predicted), w) * 0.02)
            self.pool = nn.MultiheadAttention(w, config.heads, batch_first=True)
            self.norm = nn.LayerNorm(w)
            self.out = nn.Parameter(torch.zeros(len(predicted), w, d))  # zero: training starts at the start vectors

    @classmethod
    def create(cls, lm: FrozenLM, config: Config) -> "Encoder":
        """A fresh encoder for ``lm``: it starts where ``fast`` up to v9 did (e at the
        document-start token, m ~ N(0, std(embeddings)^2)), its head's output zero."""
        n_layers = lm.model.config.num_hidden_layers
        if config.layer > n_layers:
            raise PrototokensError(f"layer {config.layer}: model {lm.name} has hidden layers 0..{n_layers}")
        torch.manual_seed(config.seed)
        start = {"e": lm.start_embedding(), "m": torch.randn(lm.d_model) * lm.embedding_std}
        meta = {"model": {"name": lm.name, "fingerprint": lm.fingerprint, "d_model": lm.d_model}, "layout": DEFAULT_LAYOUT,
                "scale": lm.embedding_std, "read_layer": n_layers // 2 if config.layer == -1 else config.layer}
        return cls(config, meta, start).to(lm.device)

    def forward(self, lm: FrozenLM, targets: list[list[int]]) -> dict[str, torch.Tensor]:
        """(B, d) rows of e and m for the texts ``targets``, with gradients into the head."""
        out = {name: v.expand(len(targets), -1) for name, v in self.start.items()}
        predicted = PREDICT[self.config.predict]
        if not predicted:
            return out
        lengths = [len(t) for t in targets]
        width = max(lengths)
        if width > self.position.shape[0] or min(lengths) < 1:
            raise PrototokensError(f"this encoder reads texts of 1 to {self.position.shape[0]} tokens (the longest it was "
                                   f"trained on), got one of {width if width > self.position.shape[0] else min(lengths)}")
        ids = torch.full((len(targets), width + 1), lm.start_id)
        for k, t in enumerate(targets):
            ids[k, 1: len(t) + 1] = torch.tensor(t)
        pad = torch.arange(width)[None] >= torch.tensor(lengths)[:, None]
        ids, pad = ids.to(lm.device), pad.to(lm.device)
        with torch.no_grad():  # the frozen LM reads the text after its document-start token
            hidden = lm.model.base_model(input_ids=ids, output_hidden_states=True, use_cache=False).hidden_states
        h = self.read(hidden[self.meta["read_layer"]][:, 1:].float()) + self.position[:width]
        h = self.blocks(h, src_key_padding_mask=pad)
        pooled, _ = self.pool(self.queries.expand(len(targets), -1, -1), h, h, key_padding_mask=pad)
        delta = torch.einsum("bkw,kwd->bkd", self.norm(pooled), self.out) * self.meta["scale"]
        return out | {name: out[name] + delta[:, k] for k, name in enumerate(predicted)}

    @torch.no_grad()
    def predict(self, lm: FrozenLM, targets: list[list[int]], batch_size: int = 64) -> dict[str, torch.Tensor]:
        """(B, d) float32 rows of e and m for the texts ``targets`` (lists of ids of ``lm``)."""
        self.check_model(lm)
        parts = [self(lm, targets[i: i + batch_size]) for i in range(0, len(targets), batch_size)]
        return {name: torch.cat([p[name] for p in parts]).detach().float() for name in ("e", "m")}

    def check_model(self, lm: FrozenLM) -> None:
        """Refuse a model other than the one this encoder was trained for."""
        check_model(self.meta["model"], lm, "the weights of this encoder")

    @property
    def digest(self) -> str:
        """A hash of the weights: which encoder a file's start came from."""
        h = hashlib.sha256()
        for name, t in sorted(self.state_dict().items()):
            h.update(name.encode() + t.detach().float().cpu().numpy().tobytes())
        return h.hexdigest()[:16]

    def metadata(self) -> dict:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "config": asdict(self.config)} | self.meta

    def save(self, path: "str | Path", extra: dict[str, torch.Tensor] | None = None) -> Path:
        """Write the weights (and ``extra`` tensors) with the metadata, atomically."""
        tensors = {k: v.detach().float().cpu().contiguous() for k, v in self.state_dict().items()} | (extra or {})
        return save_atomic(path, tensors, FORMAT, self.metadata())


def load(path: "str | Path", lm: FrozenLM | None = None) -> Encoder:
    """An encoder from its file or training folder; with ``lm``, refused if trained for another model."""
    path = Path(path)
    file = path / "encoder.safetensors" if path.is_dir() else path
    tensors, raw = read_safetensors(file, FORMAT, "an encoder file")
    try:
        meta = json.loads(raw)
        if (meta.get("format"), meta.get("format_version")) != (FORMAT, FORMAT_VERSION):
            raise ValueError(f"format {meta.get('format')!r} version {meta.get('format_version')!r}")
        config = Config(**meta.pop("config"))
        meta = {k: v for k, v in meta.items() if k not in ("format", "format_version")}
        encoder = Encoder(config, meta, {name: tensors[f"start.{name}"] for name in ("e", "m")})
        encoder.load_state_dict({k: v for k, v in tensors.items() if not k.startswith("optim.")})
    except (KeyError, TypeError, ValueError, RuntimeError, json.JSONDecodeError, PrototokensError) as err:
        raise PrototokensError(f"{file} is not a valid encoder file: {str(err).splitlines()[0]}") from None
    if lm is not None:
        check_model(meta["model"], lm, f"the weights of encoder {file}")
        encoder.to(lm.device)
    return encoder


def split(source: str, held_out: int, seed: int) -> tuple[list[str], list[str]]:
    """(training texts, held-out texts) of ``source``: ``held_out`` works picked by ``seed``."""
    names = text_names(source)
    works = sorted({SAME_WORK.get(n, n) for n in names})
    if held_out >= len(works):
        raise PrototokensError(f"source {source!r} has {len(works)} texts; hold out fewer (held_out {held_out})")
    picked = set(random.Random(f"held-out:{seed}").sample(works, held_out))
    test = [n for n in names if SAME_WORK.get(n, n) in picked]
    return [n for n in names if n not in test], test


def zero_shot(lm: FrozenLM, encoder: Encoder, targets: list[list[int]]) -> list[float]:
    """Per text, the token accuracy of one forward pass from the encoder's output alone."""
    with torch.no_grad():
        return evaluate(lm, get_layout(encoder.meta["layout"]), encoder.predict(lm, targets), targets).accuracy.tolist()


def train(lm: FrozenLM, config: Config, folder: "str | Path", progress: bool = True) -> Encoder:
    """Train an encoder for ``lm`` into ``folder``, resuming from its checkpoint if there is one."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    train_texts, test_texts = split(config.source, config.held_out, config.seed)
    longest = max(config.tokens)
    passages = [p.target_ids for p in sample_passages(lm, config.source, config.passages, longest, config.seed, 0, train_texts)]
    val = [p.target_ids for p in sample_passages(lm, config.source, config.val_passages, longest, config.seed + 1, 0, test_texts)]
    encoder = Encoder.create(lm, config)
    encoder.meta["training"] = {"source": config.source, "train_texts": train_texts, "held_out_texts": test_texts,
                                "step": 0, "seconds": 0.0, "dtype": lm.dtype_name, "device": str(lm.device)}
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=config.lr, weight_decay=0.0)
    checkpoint = folder / "checkpoint.safetensors"
    if checkpoint.exists():
        _resume(encoder, optimizer, checkpoint, lm)
    step, seconds = encoder.meta["training"]["step"], encoder.meta["training"]["seconds"]
    _keep_log(folder / "log.jsonl", step)
    layout, first_weight = get_layout(encoder.meta["layout"]), get_recipe(DEFAULT_RECIPE).first_weight  # a resumed run keeps its own
    began = time.perf_counter() - seconds
    bar = tqdm(total=config.steps, initial=step, disable=not progress, desc="encoder", dynamic_ncols=True)
    with (folder / "log.jsonl").open("a") as log_file:
        while step < config.steps:
            rng = random.Random(f"{config.seed}:{step}")  # the batch depends on the step only, so a resumed run is the same run
            n = config.tokens[step % len(config.tokens)]
            batch = [passages[i][:n] for i in rng.sample(range(len(passages)), config.batch_size)]
            for group in optimizer.param_groups:
                group["lr"] = config.lr * min(1.0, (step + 1) / (config.warmup + 1))
            scores = evaluate(lm, layout, encoder(lm, batch), batch, first_weight)
            scores.objective.mean().backward()
            nn.utils.clip_grad_norm_(encoder.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            record = {"step": step, "seconds": time.perf_counter() - began, "n_tokens": n,
                      "loss": float(scores.loss.mean()), "accuracy": float(scores.accuracy.mean())}
            if step % config.checkpoint_every == 0 or step == config.steps:
                record["held_out_accuracy"] = {str(k): sum(a := zero_shot(lm, encoder, [v[:k] for v in val])) / len(a)
                                               for k in config.tokens}
                encoder.meta["training"] |= {"step": step, "seconds": record["seconds"]}
                encoder.save(checkpoint, _optimizer_tensors(optimizer))
                (folder / "snapshots").mkdir(exist_ok=True)
                encoder.save(folder / "snapshots" / f"step-{step:07d}.safetensors")
                encoder.save(folder / "encoder.safetensors")
                (folder / "encoder.json").write_text(json.dumps(encoder.metadata(), indent=1) + "\n")
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()
            bar.update()
            bar.set_postfix(loss=f"{record['loss']:.3f}", acc=f"{record['accuracy']:.3f}", refresh=False)
    bar.close()
    return encoder


def _resume(encoder: Encoder, optimizer: torch.optim.Optimizer, checkpoint: Path, lm: FrozenLM) -> None:
    """Continue from ``checkpoint`` if it was made by the same settings (any number of steps) for ``lm``."""
    old = load(checkpoint, lm)
    same = {k: v for k, v in asdict(old.config).items() if k != "steps"} == {k: v for k, v in asdict(encoder.config).items() if k != "steps"}
    if not same or old.meta["training"]["train_texts"] != encoder.meta["training"]["train_texts"]:
        raise PrototokensError(f"{checkpoint.parent} holds an encoder trained with other settings; "
                               "use another folder, or the same settings to resume")
    encoder.load_state_dict(old.state_dict())
    encoder.meta["training"] |= {k: old.meta["training"][k] for k in ("step", "seconds")}
    encoder.meta["layout"] = old.meta["layout"]  # the default may have moved on since
    state = {"state": {}, "param_groups": optimizer.state_dict()["param_groups"]}  # the settings are the config's
    for key, value in read_safetensors(checkpoint, FORMAT, "an encoder file")[0].items():
        if key.startswith("optim."):
            _, index, name = key.split(".")
            state["state"].setdefault(int(index), {})[name] = value
    optimizer.load_state_dict(state)
    log.warning("resuming %s at step %d", checkpoint.parent, encoder.meta["training"]["step"])


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The optimiser's state as flat tensors ``optim.I.NAME`` (its settings are the config's)."""
    state = optimizer.state_dict()
    return {f"optim.{i}.{name}": v.detach().float().cpu().contiguous() for i, s in state["state"].items() for name, v in s.items()}


def _keep_log(path: Path, step: int) -> None:
    """Drop log lines past the checkpoint (written after it by a run that was then killed)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line + "\n")
        except (json.JSONDecodeError, KeyError, TypeError):
            pass  # a line cut short by a kill
    path.write_text("".join(kept))
