"""Random text: words drawn uniformly from the 100k most frequent English words (PyPI wordfreq)."""

from __future__ import annotations

import random
from functools import cache

from ..errors import PrototokensError

VOCABULARY_SIZE = 100_000


@cache
def word_list() -> tuple[str, ...]:
    """The ``VOCABULARY_SIZE`` most frequent English words, most frequent first."""
    try:
        import wordfreq
    except ImportError:
        raise PrototokensError("random text needs wordfreq: pip install wordfreq") from None
    return tuple(wordfreq.top_n_list("en", VOCABULARY_SIZE))


def random_words(n_words: int, rng: random.Random) -> str:
    """``n_words`` words drawn uniformly (with replacement), joined by spaces."""
    words = word_list()
    return " ".join(words[rng.randrange(len(words))] for _ in range(n_words))
