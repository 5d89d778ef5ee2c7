"""ProtoTokens: e and m for one or many texts, with the metadata that says what they belong to.

On disk: a safetensors file with tensors ``e`` and ``m`` (float32, one row per text, or one
row when that vector is shared) and one JSON metadata entry, ``prototokens``. Files are
written atomically and validated on load; a file made for another model is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .errors import PrototokensError
from .layout import LAYOUTS
from .outcome import Outcome

FORMAT = "prototokens"
FORMAT_VERSION = 1


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(kw_only=True)
class TextRecord(Outcome):
    """What was encoded for one text, and how well (its :class:`~prototokens.outcome.Outcome`)."""

    target_ids: list[int]
    text_sha256: str

    @classmethod
    def of(cls, outcome: Outcome, target_ids: list[int], text_sha256: str) -> "TextRecord":
        return cls(**asdict(outcome), target_ids=target_ids, text_sha256=text_sha256)

    @property
    def n_tokens(self) -> int:
        return len(self.target_ids)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@dataclass
class ProtoTokens:
    e: torch.Tensor  # (texts or 1, d)
    m: torch.Tensor  # (texts or 1, d)
    layout: str
    shared: str | None
    model: dict  # name, fingerprint, d_model
    recipe: dict
    texts: list[TextRecord]
    complete: bool = True  # False while a long encode is still writing batches
    extra: dict = field(default_factory=dict)
    # per text, every step of every start (optimize.Step), when asked for; not saved
    trajectory: list = field(default_factory=list, repr=False)

    def __len__(self) -> int:
        return len(self.texts)

    def vectors(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(e, m) of text ``i``."""
        return self.e[0 if self.shared == "e" else i], self.m[0 if self.shared == "m" else i]

    def metadata(self) -> dict:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "model": self.model,
                "layout": self.layout, "shared": self.shared, "recipe": self.recipe,
                "complete": self.complete, "extra": self.extra,
                "texts": [asdict(t) | {"n_tokens": t.n_tokens} for t in self.texts]}

    def save(self, path: "str | os.PathLike") -> Path:
        """Write atomically: a crash leaves the old file or the new one, never half of one."""
        tensors = {"e": self.e.detach().float().cpu().contiguous(), "m": self.m.detach().float().cpu().contiguous()}
        return save_atomic(path, tensors, FORMAT, self.metadata())

    def check_model(self, lm, source: str = "these proto-tokens") -> None:
        """Refuse a model other than the one these proto-tokens were made for."""
        check_model(self.model, lm, source)

    @classmethod
    def load(cls, path: "str | os.PathLike", lm=None) -> "ProtoTokens":
        """Read and validate a file; with ``lm``, also refuse it if made for another model."""
        tensors, raw = read_safetensors(path, FORMAT, "a prototokens file")
        try:
            proto = cls._from_parts(tensors, json.loads(raw))
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as err:
            raise PrototokensError(f"{path} has malformed prototokens metadata: {err!r}") from None
        if lm is not None:
            proto.check_model(lm, str(path))
        return proto

    @classmethod
    def _from_parts(cls, tensors: dict, meta: dict) -> "ProtoTokens":
        if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"format {meta.get('format')!r} version {meta.get('format_version')!r}, "
                             f"this prototokens reads {FORMAT!r} version {FORMAT_VERSION}")
        texts = []
        for t in meta["texts"]:
            record = TextRecord(**{f.name: t[f.name] for f in fields(TextRecord) if f.name in t})
            if t["n_tokens"] != record.n_tokens or not all(isinstance(i, int) for i in record.target_ids):
                raise ValueError("target ids do not match n_tokens")
            texts.append(record)
        e, m = tensors["e"], tensors["m"]
        model = meta["model"]
        if meta["layout"] not in LAYOUTS:
            raise ValueError(f"unknown layout {meta['layout']!r}")
        for name, t in (("e", e), ("m", m)):
            rows = 1 if meta["shared"] == name else len(texts)
            if t.dtype != torch.float32 or tuple(t.shape) != (rows, model["d_model"]):
                raise ValueError(f"tensor {name} has shape {tuple(t.shape)}, expected ({rows}, {model['d_model']})")
            if not torch.isfinite(t).all():
                raise ValueError(f"tensor {name} holds NaN or inf")
        return cls(e=e, m=m, layout=meta["layout"], shared=meta["shared"], model=model,
                   recipe=meta["recipe"], texts=texts, complete=meta["complete"], extra=meta.get("extra", {}))


def save_atomic(path: "str | os.PathLike", tensors: dict[str, torch.Tensor], key: str, metadata: dict) -> Path:
    """Write a safetensors file whose metadata entry ``key`` is ``metadata`` as JSON, atomically:
    a crash leaves the old file or the new one, never half of one."""
    path = Path(path)
    if path.parent and not path.parent.is_dir():
        raise PrototokensError(f"cannot write {path}: folder {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={key: json.dumps(metadata)})
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; give it an ordinary file's mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_safetensors(path: "str | os.PathLike", key: str, what: str) -> tuple[dict[str, torch.Tensor], str]:
    """The tensors of a safetensors file and its metadata entry ``key`` (raw JSON); one-line errors
    for a missing, damaged or foreign file (``what`` names the kind of file expected)."""
    raw = read_metadata(path, key, what)
    try:
        return load_file(str(path)), raw
    except (SafetensorError, OSError, ValueError) as err:
        raise PrototokensError(f"{path} is not a readable safetensors file (truncated or corrupt?): {err}") from None


def has_metadata(path: "str | os.PathLike", key: str) -> bool:
    """Whether ``path`` is a readable safetensors file with the metadata entry ``key``."""
    try:
        with safe_open(str(path), "pt") as f:
            return key in (f.metadata() or {})
    except (SafetensorError, OSError, ValueError):
        return False


def read_metadata(path: "str | os.PathLike", key: str, what: str) -> str:
    """The metadata entry ``key`` (raw JSON) of a safetensors file, its tensors left unread; the
    one-line errors of :func:`read_safetensors`."""
    path = Path(path)
    if not path.is_file():
        raise PrototokensError(f"{path} is a folder, not {what}" if path.is_dir() else f"no such file: {path}")
    try:
        with safe_open(str(path), "pt") as f:
            raw = (f.metadata() or {}).get(key)
    except (SafetensorError, OSError, ValueError) as err:
        raise PrototokensError(f"{path} is not a readable safetensors file (truncated or corrupt?): {err}") from None
    if raw is None:
        raise PrototokensError(f"{path} is a safetensors file but not {what} (no '{key}' metadata)")
    return raw


def check_model(model: dict, lm, source: str) -> None:
    """Refuse ``lm`` unless it is the model (``name``, ``fingerprint``) that ``source`` was made for."""
    name, fingerprint = model["name"], model["fingerprint"]
    if lm.fingerprint == fingerprint:
        return
    if lm.name == name:
        raise PrototokensError(
            f"{source} were made for {name!r} with other weights (fingerprint {fingerprint}; the loaded "
            f"{name!r} has {lm.fingerprint}): another quantisation, conversion or revision of that model. "
            "Load the weights they were made with; `prototokens info FILE` (or an encoder's encoder.json) shows the "
            "fingerprint they need, FrozenLM.fingerprint the model's")
    raise PrototokensError(
        f"{source} were made for model {name!r} (fingerprint {fingerprint}), not for {lm.name!r} "
        f"(fingerprint {lm.fingerprint}); load {name!r} to use them")


def load(path: "str | os.PathLike", lm=None) -> ProtoTokens:
    """Load a ``.proto.safetensors`` file; with ``lm``, refuse it if made for another model."""
    return ProtoTokens.load(path, lm)
