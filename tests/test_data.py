"""Text sources: the R data reader, books, random words, generated text, user files, passage sampling."""

from __future__ import annotations

import gzip
import json
import os
import re
import struct
import sys
import zlib

import pytest

from prototokens import PrototokensError, load_model
from prototokens.data import BOOKS, book_text, generate_continuation, passage, sample_passages, word_list
from prototokens.data.books import strip_boilerplate
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


# --- books


def test_strip_boilerplate_cuts_gutenberg_header_licence_and_control_marks():
    text = "The Project Gutenberg EBook\n*** START OF THIS PROJECT GUTENBERG EBOOK X ***\nIt began.\x1a\n" \
           "*** END OF THIS PROJECT GUTENBERG EBOOK X ***\nlicence"
    assert strip_boilerplate(text) == "It began.\n"
    preamble = "This is the February 1992 Project Gutenberg release of:\nParadise Lost\n\nBook I\n\nOf Man's first"
    assert strip_boilerplate(preamble, "plrabn12") == "Book I\n\nOf Man's first\n"


@pytest.mark.network
def test_each_collection_gives_clean_books():
    assert len(BOOKS) == 4 + 37 + 6 and len(set(BOOKS)) == len(BOOKS)
    assert book_text("austen-pride-and-prejudice").startswith("PRIDE AND PREJUDICE By Jane Austen Chapter 1 "
                                                               "It is a truth universally acknowledged")
    hamlet = book_text("shakespeare-hamlet")
    assert hamlet.startswith("HAMLET, PRINCE OF DENMARK by William Shakespeare")
    assert "To be, or not to be" in hamlet and "Gutenberg" not in hamlet
    alice = book_text("alice29")
    assert alice.startswith("ALICE'S ADVENTURES IN WONDERLAND") and alice.endswith("summer days. THE END")
    assert book_text("plrabn12").startswith("Book I Of Man's first disobedience")
    for name in ("alice29", "austen-emma", "shakespeare-lear"):
        assert not re.search(r"[\x00-\x1f]", book_text(name))  # whitespace folded, no ^Z end marks


def test_an_unreachable_registry_is_a_clear_error_and_caches_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("PROTOTOKENS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    with pytest.raises(PrototokensError, match=r"could not fetch brotli==1.2.1 from PyPI \(is it reachable\?\)"):
        book_text("lcet10")
    assert not list((tmp_path / "cache").rglob("*.txt"))
    with pytest.raises(PrototokensError, match="unknown book 'hamlet'; choose one of: alice29"):
        book_text("hamlet")


# --- passages


@pytest.fixture(scope="module")
def lm():
    """The embedded default model (its tokenizer cuts the passages)."""
    return load_model(device="cpu")


@pytest.mark.slow
@pytest.mark.network
def test_book_passages_are_exact_reproducible_and_located(lm):
    passages = sample_passages(lm, "books", n_texts=4, n_tokens=32, seed=3, context_tokens=16)
    assert [p.to_dict() for p in passages] == [p.to_dict() for p in sample_passages(lm, "books", 4, 32, 3, 16)]
    assert len({p.text_name for p in passages}) == 4  # round-robin over a seeded shuffle of the books
    for p in passages:
        text = book_text(p.text_name)
        assert len(p.target_ids) == 32 and len(p.context_ids) == 16 and p.source == "books"
        assert p.target_text == lm.detokenize(p.target_ids) and p.target_text.startswith(" ")
        assert text[p.char_offset:].startswith(p.target_text[1:])  # the target: the text at the offset
        context_and_target = lm.detokenize(p.context_ids + p.target_ids)
        assert text[p.context_char_offset:].startswith(context_and_target.lstrip())
        assert re.search(r"[.!?][\"'’”)]? $", text[p.char_offset - 3: p.char_offset])  # a sentence start
        assert json.loads(json.dumps(p.to_dict()))["target_ids"] == p.target_ids


@pytest.mark.slow
@pytest.mark.network
def test_passages_differ_by_seed_and_extend_with_length_and_count(lm):
    short = sample_passages(lm, "books:austen,alice29", n_texts=3, n_tokens=8, seed=0)
    long = sample_passages(lm, "books:austen,alice29", n_texts=4, n_tokens=24, seed=0)
    assert {p.text_name for p in long} <= {"alice29"} | {b for b in BOOKS if b.startswith("austen-")}
    for s, longer in zip(short, long):
        assert longer.target_ids[:8] == s.target_ids and longer.context_ids == s.context_ids
    other = sample_passages(lm, "books:austen,alice29", n_texts=3, n_tokens=8, seed=1)
    assert [p.char_offset for p in other] != [p.char_offset for p in short]


@pytest.mark.slow
@pytest.mark.network
def test_legacy_passage_still_cuts_exact_lengths(lm):
    ids = passage(lm, book_text("alice29"), 32, start_char=1000)
    assert len(ids) == 32 and lm.detokenize(ids)[0].isupper()


@pytest.mark.slow
def test_random_words_come_from_the_top_100k(lm):
    passages = sample_passages(lm, "random", n_texts=3, n_tokens=40, seed=5)
    assert passages == sample_passages(lm, "random", 3, 40, 5)
    assert passages != sample_passages(lm, "random", 3, 40, 6)
    vocabulary = set(word_list())
    assert len(vocabulary) == 100_000
    for p in passages:
        assert len(p.target_ids) == 40 and p.context_ids == [] and p.text_name == "random-words"
        words = p.target_text.split(" ")
        assert all(w in vocabulary for w in words[:-1])  # the last may be cut inside a word
        assert any(w.startswith(words[-1]) for w in vocabulary)


@pytest.mark.slow
@pytest.mark.network
def test_user_txt_and_jsonl_texts(lm, tmp_path):
    txt = tmp_path / "story.txt"
    txt.write_text(book_text("alice29")[:5000], encoding="utf-8")
    (p,) = sample_passages(lm, str(txt), n_texts=1, n_tokens=16, seed=0, context_tokens=8)
    assert p.text_name == "story" and book_text("alice29")[p.char_offset:].startswith(p.target_text.lstrip())
    jsonl = tmp_path / "notes.jsonl"
    long = "The first sentence is here. " * 20
    jsonl.write_text(json.dumps("Too short.") + "\n\n" + json.dumps({"text": long}) + "\n", encoding="utf-8")
    passages = sample_passages(lm, str(jsonl), n_texts=3, n_tokens=16, seed=0, context_tokens=8)
    assert {p.text_name for p in passages} == {"notes:3"}  # the short text gives way to the long one
    assert all(len(p.target_ids) == 16 and p.target_text.lstrip().startswith("The first") for p in passages)
    jsonl.write_text('{"body": "no text field"}\n', encoding="utf-8")
    with pytest.raises(PrototokensError, match="notes.jsonl line 1: expected a JSON string or an object"):
        sample_passages(lm, str(jsonl), 1, 16)
    with pytest.raises(PrototokensError, match="unknown text source 'novels'"):
        sample_passages(lm, "novels", 1, 16)
    with pytest.raises(PrototokensError, match="unknown book or collection 'dickens'; choose from: canterbury"):
        sample_passages(lm, "books:dickens", 1, 16)


def test_a_hub_dataset_without_the_datasets_package_is_a_clear_error(tiny, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(PrototokensError, match="pip install datasets"):
        sample_passages(tiny, "hf:wikitext:wikitext-2-raw-v1", 1, 16)


def test_generation_is_seeded_and_exact(tiny):
    context = tiny.tokenize("It is a truth universally acknowledged")
    first = generate_continuation(tiny, context, 8, seed=1)
    assert len(first) == 8 and first == generate_continuation(tiny, context, 8, seed=1)
    assert first != generate_continuation(tiny, context, 8, seed=2)


@pytest.mark.slow
@pytest.mark.network
def test_generated_targets_continue_the_book_contexts(lm):
    (book,) = sample_passages(lm, "books:austen", n_texts=1, n_tokens=8, seed=0, context_tokens=16)
    (gen,) = sample_passages(lm, "generated:austen", n_texts=1, n_tokens=8, seed=0, context_tokens=16)
    assert gen.source == "generated:austen" and len(gen.target_ids) == 8
    assert (gen.text_name, gen.char_offset, gen.context_ids) == (book.text_name, book.char_offset, book.context_ids)
    assert gen.target_text == lm.detokenize(gen.target_ids)
