"""Text sources. Data is fetched from package registries into the cache on first use."""

from .books import BOOKS, book_text, passage

__all__ = ["BOOKS", "book_text", "passage"]
