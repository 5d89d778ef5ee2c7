"""Public-domain books that ship inside packages, and passages cut from them."""

from __future__ import annotations

import re

from ..errors import PrototokensError
from ..model import FrozenLM
from .fetch import sdist_files

CANTERBURY = {  # the Canterbury corpus texts in the brotli source release
    "alice29": "tests/testdata/alice29.txt",  # Carroll, Alice's Adventures in Wonderland
    "plrabn12": "tests/testdata/plrabn12.txt",  # Milton, Paradise Lost
    "asyoulik": "tests/testdata/asyoulik.txt",  # Shakespeare, As You Like It
    "lcet10": "tests/testdata/lcet10.txt",  # Library of Congress report
}
BOOKS = {name: ("brotli", "1.2.1", path) for name, path in CANTERBURY.items()}


def book_text(name: str) -> str:
    """The whole book, whitespace folded to single spaces."""
    if name not in BOOKS:
        raise PrototokensError(f"unknown book {name!r}; choose one of: {', '.join(BOOKS)}")
    package, version, inner = BOOKS[name]
    folder = sdist_files(package, version, {f"{name}.txt": inner})
    raw = (folder / f"{name}.txt").read_text(encoding="latin-1")
    return re.sub(r"\s+", " ", raw).strip()


def passage(lm: FrozenLM, text: str, n_tokens: int, start_char: int = 0) -> list[int]:
    """Exactly ``n_tokens`` ids of the text from the first sentence start at or after ``start_char``."""
    found = re.compile(r"(?:^|(?<=[.!?] )|(?<=[.!?]' ))[A-Z`]").search(text, start_char)
    if found is None:
        raise PrototokensError(f"no sentence starts after character {start_char}")
    ids = lm.tokenize(text[found.start(): found.start() + 20 * n_tokens])
    if len(ids) < n_tokens:
        raise PrototokensError(f"the text after character {start_char} has fewer than {n_tokens} tokens")
    return ids[:n_tokens]
