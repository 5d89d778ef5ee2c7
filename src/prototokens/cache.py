"""Where prototokens keeps what it converts or fetches: $PROTOTOKENS_CACHE or the user cache."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    root = os.environ.get("PROTOTOKENS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "prototokens"
    )
    path = Path(root, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
