"""Text sources: the R data reader, books, random words, generated text, user files, passage sampling."""

from __future__ import annotations

import gzip
import struct
import zlib

import pytest

from prototokens import PrototokensError
from prototokens.data.rdata import RVector, lazyload_db, unserialize

# --- a tiny R serialization writer, enough to build test blobs by hand (R Internals, "Serialization")


def _int(*values: int) -> bytes:
    return struct.pack(f">{len(values)}i", *values)


def _charsxp(s: str | None) -> bytes:
    if s is None:
        return _int(9, -1)
    raw = s.encode()
    return _int(9 | (1 << 15), len(raw)) + raw  # CHARSXP flagged UTF-8


def _strsxp(*values: str | None) -> bytes:
    return _int(16, len(values)) + b"".join(_charsxp(v) for v in values)


def _named(kind: int, items: list[bytes], names: list[str]) -> bytes:
    """A vector with a names attribute: the attribute pairlist is tag 'names' (a symbol), value, NULL."""
    attributes = _int(2 | (1 << 10)) + _int(1) + _charsxp("names") + _strsxp(*names) + _int(254)
    return _int(kind | (1 << 9), len(items)) + b"".join(items) + attributes


def _serialize(body: bytes, version: int = 3) -> bytes:
    header = b"X\n" + _int(version, 0x40200, 0x30500)
    return header + (_int(5) + b"UTF-8" if version == 3 else b"") + body


@pytest.mark.parametrize("version", [2, 3])
def test_unserialize_reads_named_list_of_vectors(version):
    blob = _serialize(_named(19, [_strsxp("It is a truth", None, "é"), _int(13, 2, 7, -(2**31)),
                                  _int(14, 1) + struct.pack(">d", 0.5)], ["text", "n", "x"]), version)
    obj = unserialize(blob)
    assert isinstance(obj, RVector)
    assert obj.named() == {"text": RVector(["It is a truth", None, "é"]), "n": RVector([7, None]),
                           "x": RVector([0.5])}


def test_unserialize_resolves_symbol_references():
    """The second use of a symbol is a reference (REFSXP) to the first."""
    names_tag = _int(1) + _charsxp("names")
    ref = _int(255 | (1 << 8))  # reference number 1, packed into the flags
    inner = _int(19 | (1 << 9), 1) + _strsxp("a") + _int(2 | (1 << 10)) + names_tag + _strsxp("v") + _int(254)
    outer = _int(19 | (1 << 9), 1) + inner + _int(2 | (1 << 10)) + ref + _strsxp("w") + _int(254)
    obj = unserialize(_serialize(outer))
    assert obj.named()["w"].named() == {"v": RVector(["a"])}


def test_unserialize_refuses_what_it_cannot_read():
    with pytest.raises(PrototokensError, match="not an XDR"):
        unserialize(b"A\n" + _int(3))
    with pytest.raises(PrototokensError, match="SEXP type 3"):
        unserialize(_serialize(_int(3)))  # a closure
    with pytest.raises(PrototokensError, match="truncated"):
        unserialize(_serialize(_int(16, 2) + _charsxp("only one")))


def test_lazyload_db_reads_every_variable(tmp_path):
    records, index = b"", []
    for value in ["first line", "second"]:
        raw = _serialize(_strsxp(value, "more"))
        record = struct.pack(">I", len(raw)) + zlib.compress(raw)
        index.append(_int(13, 2, len(records), len(record)))
        records += record
    variables = _named(19, index, ["a", "b"])
    rdx = _named(19, [variables, _named(19, [], []), _int(10, 1, 1)], ["variables", "references", "compressed"])
    (tmp_path / "db.rdx").write_bytes(gzip.compress(_serialize(rdx)))
    (tmp_path / "db.rdb").write_bytes(records)
    assert lazyload_db(tmp_path / "db") == {"a": RVector(["first line", "more"]), "b": RVector(["second", "more"])}
