"""A small reader for R's serialization format (XDR binary, versions 2 and 3) and lazy-load databases.

Enough of the format for data: NULL, logical/integer/double/character vectors, lists and
pairlists, with attributes (names become a dict); symbols and references are resolved.
Closures, environments and byte code are refused. Format: R Internals, "Serialization formats".
"""

from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import PrototokensError

NILSXP, SYMSXP, LISTSXP, CHARSXP, LGLSXP, INTSXP, REALSXP, STRSXP, VECSXP, EXPRSXP = 0, 1, 2, 9, 10, 13, 14, 16, 19, 20
REFSXP, NILVALUE_SXP = 255, 254
HAS_ATTR, HAS_TAG, LATIN1 = 1 << 9, 1 << 10, 1 << 14
NA_INTEGER = -(2**31)


@dataclass
class RVector:
    """An R vector: its values (None for NA) and attributes (e.g. names, class)."""

    values: list
    attributes: dict = field(default_factory=dict)

    def named(self) -> dict:
        """The values keyed by their ``names`` attribute."""
        return dict(zip(self.attributes["names"].values, self.values))


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos, self.refs = data, 0, []

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise PrototokensError("truncated R serialization; the file is damaged, delete it and fetch again")
        chunk = self.data[self.pos: self.pos + n]
        self.pos += n
        return chunk

    def int(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def length(self) -> int:
        n = self.int()
        return n if n != -1 else (self.int() << 32) + self.int()

    def header(self) -> None:
        if self.take(2) != b"X\n":
            raise PrototokensError("not an XDR R serialization (only format 'X' is supported)")
        version = self.int()
        self.take(8)  # the R version that wrote it, and the oldest that can read it
        if version == 3:
            self.take(self.int())  # native encoding name
        elif version != 2:
            raise PrototokensError(f"R serialization version {version} is not supported (only 2 and 3)")

    def item(self):
        flags = self.int()
        kind = flags & 0xFF
        if kind == NILVALUE_SXP:
            return None
        if kind == REFSXP:
            index = flags >> 8 or self.int()
            return self.refs[index - 1]
        if kind == SYMSXP:
            name = self.item()
            self.refs.append(name)
            return name
        if kind == LISTSXP:  # a pairlist: attributes, tag, value, then the rest of the list
            if flags & HAS_ATTR:
                self.item()  # attributes of a pairlist are not needed
            tag = self.item() if flags & HAS_TAG else None
            head = self.item()
            return [(tag, head)] + (self.item() or [])
        if kind == CHARSXP:
            n = self.int()
            encoding = "latin-1" if flags & LATIN1 else "utf-8"
            return None if n == -1 else self.take(n).decode(encoding, errors="replace")
        if kind in (LGLSXP, INTSXP):
            n = self.length()
            values = [None if v == NA_INTEGER else v for v in struct.unpack(f">{n}i", self.take(4 * n))]
        elif kind == REALSXP:
            n = self.length()
            values = list(struct.unpack(f">{n}d", self.take(8 * n)))
        elif kind in (STRSXP, VECSXP, EXPRSXP):
            values = [self.item() for _ in range(self.length())]
        else:
            raise PrototokensError(f"R object of SEXP type {kind} is not supported by this reader (data only)")
        attributes = dict(self.item()) if flags & HAS_ATTR else {}
        return RVector(values, attributes)


def unserialize(data: bytes):
    """The R object in an XDR serialization (the bytes of an uncompressed .rds file)."""
    reader = _Reader(data)
    reader.header()
    return reader.item()


def lazyload_db(base: str | Path) -> dict:
    """All variables of an R lazy-load database (``base.rdx`` index, ``base.rdb`` records)."""
    base = Path(base)
    index = unserialize(gzip.decompress(base.with_suffix(".rdx").read_bytes())).named()
    records = base.with_suffix(".rdb").read_bytes()
    out = {}
    for name, where in index["variables"].named().items():
        offset, size = where.values
        record = records[offset: offset + size]
        expected = struct.unpack(">I", record[:4])[0]
        raw = zlib.decompress(record[4:])
        if len(raw) != expected:
            raise PrototokensError(f"record {name!r} of {base}.rdb is damaged; delete it and fetch again")
        out[name] = unserialize(raw)
    return out
