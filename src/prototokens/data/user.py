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
    if path.suffix == ".txt":
        return {path.stem: read_utf8(path)}
    return {f"{path.stem}:{number}": text for number, text in jsonl_texts(path).items()}


def read_utf8(path: Path) -> str:
    """The file's text; a one-line error if it is missing, a folder, or not UTF-8."""
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise PrototokensError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise PrototokensError(f"{path} is a folder, not a file") from None
    except UnicodeDecodeError as err:
        raise PrototokensError(f"{path} is not UTF-8 text (byte {err.start}: {err.reason})") from None


def jsonl_texts(path: Path) -> dict[int, str]:
    """Line number -> text of a JSONL file: each non-blank line a JSON string or {"text": ...}."""
    texts = {}
    for number, line in enumerate(read_utf8(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            raise PrototokensError(f"{path} line {number}: not valid JSON ({err.msg})") from None
        text = item.get("text") if isinstance(item, dict) else item
        if not isinstance(text, str):
            raise PrototokensError(f'{path} line {number}: expected a JSON string or an object with a "text" string')
        texts[number] = text
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
