"""Append-only JSONL records for long studies: a run folder, its settings, one line per unit.

``run.json`` in the folder holds the settings the run was started with; opening the folder
with other settings is refused, so old and new records never mix (texts added after the run's
own are not other settings: the run grows by them). Each finished unit is one
line, written and flushed at once, keyed by a hash of what the unit is; a rerun skips keys
already present. A line cut short by a kill is ignored (and its unit redone).

Under torchrun each rank appends to its own ``records.rank-K.jsonl``; every rank reads all of
them (whatever job or world size wrote them) to know what is done, and :meth:`RunFolder.gather`
has rank 0 merge them into ``records.jsonl`` in the order one process would have written it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from . import distributed
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
            new = json.loads(json.dumps(settings))
            changed = changed_settings(old, new)
            if changed == ["texts"] and _grows(old, new):  # more texts: the first ones' records stand
                changed = []
                _write_run(run, settings)
            if changed:
                raise PrototokensError(
                    f"{self.folder} holds a run with other settings ({', '.join(changed)} differ); "
                    "use another folder, or the same settings to resume")
        else:
            _write_run(run, settings)
        self.settings = settings
        self.path = self.folder / records
        if distributed.active():
            self.write_path = self.folder / f"{Path(records).stem}.rank-{distributed.rank()}.jsonl"
        else:
            self.write_path = self.path
            merge_parts(self.folder, records)  # left by a torchrun job that was stopped
        for path in {self.path, self.write_path} if distributed.is_main() else {self.write_path}:
            _drop_partial_last_line(path)
        self.read()

    def read(self) -> None:
        """(Re)read the records: the merged file and every rank's part."""
        self.records = _unique([r for path in (self.path, *_parts(self.folder, self.path.name)) for r in read_records(path)])
        self.done = {r["key"] for r in self.records}

    def gather(self) -> None:
        """Under torchrun, wait for every rank, have rank 0 merge the parts into the records
        file, and reread it, so every rank holds all records. A no-op in one process."""
        if distributed.active():
            distributed.barrier()
            if distributed.is_main():
                merge_parts(self.folder, self.path.name)
            distributed.barrier()
            self.read()

    def append(self, record: dict) -> None:
        """Write one finished unit durably (flushed and synced before returning)."""
        with self.write_path.open("a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.records.append(record)
        self.done.add(record["key"])


def _parts(folder: Path, records: str = "records.jsonl") -> list[Path]:
    return sorted(folder.glob(f"{Path(records).stem}.rank-*.jsonl"))


def _unique(records: list[dict]) -> list[dict]:
    """The first record of each key (a unit redone after a kill shows up twice)."""
    seen: set = set()
    return [r for r in records if not (r["key"] in seen or seen.add(r["key"]))]


def merge_parts(folder: "str | os.PathLike", records: str = "records.jsonl") -> bool:
    """Merge the ranks' part files of a run folder into its records file and remove them.

    The records are ordered as one process writes them (by length, then seed, then the text's
    place in ``run.json``), so a merged run reports exactly as a one-process run. The new file
    replaces the old atomically before any part is removed: a kill leaves parts that the next
    merge reads again, never a loss."""
    folder = Path(folder)
    parts = _parts(folder, records)
    if not parts:
        return False
    path = folder / records
    merged = _unique([r for p in (path, *parts) for r in read_records(p)])
    run = folder / "run.json"
    texts = json.loads(run.read_text()).get("texts", []) if run.exists() else []
    place = {t: i for i, t in enumerate(texts)}

    def order(r):
        return (r.get("length", 0), r.get("seed", 0), place.get(r.get("text"), len(place)))

    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with tmp.open("w") as f:
        f.writelines(json.dumps(r, sort_keys=True) + "\n" for r in sorted(merged, key=order))
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    for p in parts:
        p.unlink()
    return True


def changed_settings(old: dict, new: dict) -> list[str]:
    """The settings that differ; a recipe is compared as :func:`~prototokens.recipe.same_recipe`
    does, so folders and states written before a recipe field existed still resume."""
    def differs(k):
        if k == "recipe" and isinstance(old.get(k), dict) and isinstance(new.get(k), dict):
            return not same_recipe(old[k], new[k])
        return old.get(k) != new.get(k)

    return sorted(k for k in old.keys() | new.keys() if differs(k))


def _grows(old: dict, new: dict) -> bool:
    """Whether ``new`` is ``old``'s run with texts added after the ones it had (each text a unit
    of its own, so a shared vector, one unit over all texts, cannot grow)."""
    texts = old.get("texts")
    return (isinstance(texts, list) and not old.get("shared_m") and len(new["texts"]) > len(texts)
            and new["texts"][: len(texts)] == texts)


def _write_run(run: Path, settings: dict) -> None:
    tmp = run.with_suffix(f".{os.getpid()}.tmp")  # ranks may write it at once
    tmp.write_text(json.dumps(settings, indent=1, sort_keys=True))
    tmp.replace(run)


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
