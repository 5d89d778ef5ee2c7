"""Passages as the cramming work cuts them: a context, then a target of exactly N tokens that follows it.

Sources: ``books`` (all books, or ``books:NAME,...`` with book or collection names), ``generated``
(``generated[:NAMES]``: the same contexts as ``books``, the target sampled by the model itself at
temperature 1), ``random`` (words drawn uniformly from wordfreq's top 100k, no context), and user
texts (``FILE.txt``, ``FILE.jsonl``, ``hf:DATASET[:CONFIG]``).

Sampling is seeded and each passage depends only on (seed, its index): passage i is the same
whatever n_texts is, and, away from the very end of a text, whatever n_tokens is, so a target of
N tokens is the first N tokens of the target of 2N. A book or user target starts at a sentence
start (or a word start in a text without sentences) of the whitespace-folded text.
"""

from __future__ import annotations

import random
import re
from bisect import bisect_left
from dataclasses import asdict, dataclass, replace

import torch

from ..errors import PrototokensError
from ..model import FrozenLM
from .books import BOOKS, COLLECTIONS, book_text, fold
from .user import user_texts
from .words import random_words

SENTENCE_START = re.compile(  # an (optionally quoted) capital after . ! ? and a space, not after Mr. etc.
    r"(?:^|(?<=[.!?] )|(?<=[.!?][\"'’”)] ))(?<!Mr\. )(?<!Mrs\. )(?<!Dr\. )(?<!St\. )(?=[`\"'‘“(]*[A-Z])")
WORD_START = re.compile(r"(?<!\S)\S")


@dataclass
class Passage:
    """A target of exactly N token ids after its context, and where both come from."""

    source: str  # the source it was sampled from, e.g. "books", "generated", "random", "notes.jsonl"
    text_name: str  # the book, "FILE:LINE", or "random-words"
    index: int  # its number in the sample
    seed: int
    char_offset: int  # where the target's first word starts in the folded text (generated: where it branches off)
    context_char_offset: int  # where the context's first (perhaps partial) word starts
    context_ids: list[int]
    target_ids: list[int]
    target_text: str

    def to_dict(self) -> dict:
        """A JSON-ready record."""
        return asdict(self)


def sample_passages(lm: FrozenLM, source: str, n_texts: int, n_tokens: int, seed: int = 0,
                    context_tokens: int = 64, only: list[str] | None = None) -> list[Passage]:
    """``n_texts`` passages of exactly ``n_tokens`` target ids (of ``lm``'s tokenizer) from ``source``,
    each after up to ``context_tokens`` ids of context (fewer only at the very start of a text);
    with ``only``, from those of the source's texts only (see :func:`text_names`)."""
    if n_texts < 0 or n_tokens < 1 or context_tokens < 0:
        raise PrototokensError("n_texts must be >= 0, n_tokens >= 1 and context_tokens >= 0")
    kind, _, arg = source.partition(":")
    if kind == "random":
        return [_random_passage(lm, source, i, seed, n_tokens) for i in range(n_texts)]
    if kind in ("books", "generated"):
        names, load = select_books(arg), book_text
    else:
        texts = user_texts(source)
        names, load = list(texts), texts.__getitem__
    if only is not None:
        names = [n for n in names if n in set(only)]
        if not names:
            raise PrototokensError(f"none of the texts {', '.join(only[:5])} is in source {source!r}")
    passages = _text_passages(lm, source, names, load, n_texts, n_tokens, seed, context_tokens)
    if kind == "generated":
        passages = [_generated(lm, p, n_tokens) for p in passages]
    return passages


def text_names(source: str) -> list[str]:
    """The names of a source's texts, as passages' ``text_name`` gives them: books, or ``FILE:LINE``."""
    kind, _, arg = source.partition(":")
    if kind == "random":
        raise PrototokensError("random words come from no named texts; use books[:NAMES] or a file of texts")
    return select_books(arg) if kind in ("books", "generated") else list(user_texts(source))


def passage(lm: FrozenLM, text: str, n_tokens: int, start_char: int = 0) -> list[int]:
    """Exactly ``n_tokens`` ids of ``text`` from its first sentence start at or after ``start_char``."""
    found = SENTENCE_START.search(text, start_char)
    if found is None:
        raise PrototokensError(f"no sentence starts after character {start_char}")
    ids = lm.tokenize(text[found.start(): found.start() + 20 * n_tokens])
    if len(ids) < n_tokens:
        raise PrototokensError(f"the text after character {start_char} has fewer than {n_tokens} tokens")
    return ids[:n_tokens]


def select_books(selection: str = "") -> list[str]:
    """Books named by a comma-separated list of book and collection names; all books if empty."""
    names = []
    for item in filter(None, selection.split(",")):
        if item not in BOOKS and item not in COLLECTIONS:
            raise PrototokensError(f"unknown book or collection {item!r}; choose from: "
                                   f"{', '.join(COLLECTIONS)}, {', '.join(BOOKS)}")
        names += COLLECTIONS[item][1] if item in COLLECTIONS else [item]
    return list(dict.fromkeys(names)) or list(BOOKS)


def generate_continuation(lm: FrozenLM, context_ids: list[int], n_tokens: int, seed: int) -> list[int]:
    """Exactly ``n_tokens`` ids the model samples after the context: temperature 1, no top-k or top-p
    truncation, end-of-text suppressed; seeded without touching the caller's random state."""
    from transformers import GenerationConfig

    if not context_ids:
        raise PrototokensError("generation needs a context of at least one token; use context_tokens >= 1")
    eos = lm.model.generation_config.eos_token_id or lm.tokenizer.eos_token_id
    config = GenerationConfig(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=n_tokens,
                              min_new_tokens=n_tokens, eos_token_id=eos, pad_token_id=lm.tokenizer.pad_token_id)
    ids = torch.tensor([context_ids], device=lm.device)
    with torch.random.fork_rng(devices=[lm.device] if lm.device.type == "cuda" else []):
        torch.manual_seed(seed)
        out = lm.model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=config)
    return out[0, len(context_ids):].tolist()


def _random_passage(lm: FrozenLM, source: str, index: int, seed: int, n_tokens: int) -> Passage:
    rng = random.Random(f"words:{seed}:{index}")
    text = random_words(n_tokens + 8, rng)  # each word is at least one token
    target = lm.tokenize(text)[:n_tokens]
    if len(target) < n_tokens:
        raise PrototokensError(f"{n_tokens + 8} random words gave fewer than {n_tokens} tokens")
    return Passage(source, "random-words", index, seed, 0, 0, [], target, lm.detokenize(target))


def _text_passages(lm, source, names, load, n_texts, n_tokens, seed, context_tokens) -> list[Passage]:
    """Passage i: text ``order[i % len]`` (a seeded shuffle), cut at the first sentence start after a
    uniform position u (seeded by i); a text too short for it gives way to the next one in the order."""
    order = random.Random(seed).sample(names, len(names))
    texts: dict[str, tuple[str, list[int]]] = {}  # folded text and its starts, loaded as needed
    passages = []
    for i in range(n_texts):
        u = random.Random(f"{seed}:{i}").random()
        for j in range(len(order)):
            name = order[(i + j) % len(order)]
            if name not in texts:
                text = fold(load(name))
                texts[name] = text, [m.start() for m in SENTENCE_START.finditer(text)] or \
                    [m.start() for m in WORD_START.finditer(text)]
            cut = _cut(lm, *texts[name], u, n_tokens, context_tokens)
            if cut:
                passages.append(Passage(source, name, i, seed, *cut, lm.detokenize(cut[-1])))
                break
        else:
            raise PrototokensError(f"no text of {source!r} holds {n_tokens} tokens after a sentence start")
    return passages


def _cut(lm, text, starts, u, n_tokens, context_tokens):
    """(char offset, context char offset, context ids, target ids) at the first start at or after
    ``u * len(text)`` that has ``n_tokens`` tokens after it, else the last before it; None if none has."""
    first = bisect_left(starts, int(u * len(text)))
    for start in starts[first:] + starts[:first][::-1]:
        if cut := _cut_at(lm, text, start, n_tokens, context_tokens):
            return cut
    return None


def _cut_at(lm, text, start, n_tokens, context_tokens):
    """Tokenize a window around ``start`` (grown until it holds enough tokens) and cut it there.

    The window begins at a word start, so its tokens match those of the whole text except perhaps
    its first, which the context never includes; likewise the last, which the target never includes.
    """
    span = 8 * (n_tokens + context_tokens) + 64  # characters; about 4 a token in English
    while True:
        lo = max(0, text.rfind(" ", 0, max(0, start - span)) + 1)
        hi = min(len(text), start + span)
        enc = lm.tokenizer(text[lo:hi], add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        k = next(j for j, (_, end) in enumerate(offsets) if end > start - lo)  # the token holding the start
        if text[lo + offsets[k][0]: start].strip():
            return None  # the tokenizer merged the start into the token before it: not a clean start
        enough_before = k > context_tokens or lo == 0
        enough_after = len(ids) - k > n_tokens or (hi == len(text) and len(ids) - k == n_tokens)
        if enough_before and enough_after:
            c = max(0, k - context_tokens)
            context_start = lo + offsets[c][0] + (text[lo + offsets[c][0]] == " ") if c < k else start
            return start, context_start, ids[c:k], ids[k: k + n_tokens]
        if hi == len(text) and not enough_after:
            return None
        span *= 2


def _generated(lm: FrozenLM, book: Passage, n_tokens: int) -> Passage:
    """The book passage with its target replaced by the model's own continuation of its context."""
    seed = random.Random(f"generated:{book.seed}:{book.index}").getrandbits(63)
    target = generate_continuation(lm, book.context_ids, n_tokens, seed)
    return replace(book, target_ids=target, target_text=lm.detokenize(target))
