"""Append-only JSONL records for long studies: a run folder, its settings, one line per unit.

``run.json`` in the folder holds the settings the run was started with; opening the folder
with other settings is refused, so old and new records never mix. Each finished unit is one
line, written and flushed at once, keyed by a hash of what the unit is; a rerun skips keys
already present. A line cut short by a kill is ignored (and its unit redone).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .errors import PrototokensError
from .recipe import same_recipe


def key_of(*parts) -> str:
    """A stable hash of JSON-able parts: the identity of one unit of work."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


class RunFolder:
    def __init__(self, folder: "str | os.PathLike", settings: dict, records: str = "records.jsonl"):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        run = self.folder / "run.json"
        if run.exists():
            old = json.loads(run.read_text())
            changed = _changed(old, json.loads(json.dumps(settings)))
            if changed:
                raise PrototokensError(
                    f"{self.folder} holds a run with other settings ({', '.join(changed)} differ); "
                    "use another folder, or the same settings to resume")
        else:
            tmp = run.with_suffix(".tmp")
            tmp.write_text(json.dumps(settings, indent=1, sort_keys=True))
            tmp.replace(run)
        self.settings = settings
        self.path = self.folder / records
        _drop_partial_last_line(self.path)
        self.records = read_records(self.path)
        self.done = {r["key"] for r in self.records}

    def append(self, record: dict) -> None:
        """Write one finished unit durably (flushed and synced before returning)."""
        with self.path.open("a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.records.append(record)
        self.done.add(record["key"])


def _changed(old: dict, new: dict) -> list[str]:
    """The settings that differ; a recipe is compared as :func:`~prototokens.recipe.same_recipe`
    does, so folders written before recipes carried a version or an optimiser still resume."""
    def differs(k):
        if k == "recipe" and isinstance(old.get(k), dict) and isinstance(new.get(k), dict):
            return not same_recipe(old[k], new[k])
        return old.get(k) != new.get(k)

    return sorted(k for k in old.keys() | new.keys() if differs(k))


def _drop_partial_last_line(path: Path) -> None:
    """Cut a line left half-written by a kill, so that the next record starts on its own line."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        with path.open("r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def read_records(path: "str | os.PathLike") -> list[dict]:
    """All records of a file; a trailing line cut short by a kill is dropped."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    lines = path.read_text().split("\n")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if n < len(lines):  # not the last line: real damage, not a cut-off write
                raise PrototokensError(f"{path} line {n} is not valid JSON; the records are damaged") from None
    return records
