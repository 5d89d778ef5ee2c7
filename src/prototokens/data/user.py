"""User texts: a .txt file (one text), a JSONL file (one text a line), or a Hugging Face dataset."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import PrototokensError

HF_LIMIT = 1000  # texts taken from the start of a Hugging Face dataset's train split


def user_texts(source: str) -> dict[str, str]:
    """Name -> text for ``FILE.txt``, ``FILE.jsonl`` (a string or an object with "text" a line)
    or ``hf:DATASET[:CONFIG]`` (the "text" column of the train split, streamed)."""
    if source.startswith("hf:"):
        return _hf_texts(*source[3:].split(":", 1))
    path = Path(source)
    if path.suffix not in (".txt", ".jsonl"):
        raise PrototokensError(f"unknown text source {source!r}; choose books[:NAMES], generated[:NAMES], "
                               "random, a .txt or .jsonl file, or hf:DATASET[:CONFIG]")
    if not path.is_file():
        raise PrototokensError(f"no such file: {source}")
    if path.suffix == ".txt":
        return {path.stem: path.read_text(encoding="utf-8")}
    texts = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            texts[f"{path.stem}:{number}"] = record if isinstance(record, str) else record["text"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise PrototokensError(f"{path}:{number} is not a JSON string or an object with a \"text\" field") from None
    if not texts:
        raise PrototokensError(f"{path} holds no texts")
    return texts


def _hf_texts(name: str, config: str | None = None) -> dict[str, str]:
    try:
        import datasets
    except ImportError:
        raise PrototokensError("Hugging Face datasets need the datasets package: pip install datasets") from None
    try:
        rows = datasets.load_dataset(name, config, split="train", streaming=True)
        texts = {}
        for number, row in enumerate(rows):
            if len(texts) == HF_LIMIT:
                break
            if row["text"].strip():
                texts[f"{name}:{number}"] = row["text"]
    except Exception as err:  # offline, unknown name, no "text" column: all end here
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise PrototokensError(f"could not read the dataset {name!r} from the hub (is it reachable, "
                               f"does it have a \"text\" column?): {first}") from None
    return texts
