"""How the emulator's search matches a query: by words, in names and descriptions.

Replicate's search (``GET /v1/search``, and ``QUERY /v1/models`` that the official clients
call) is semantic; the emulator's is lexical and deterministic, which is what a test
needs: a query word matches a word of a field that starts with it (``upscal`` matches
"upscaling"), case-insensitively; each field has a weight (a model's name counts more
than its description), and a result's score is the weighted share of the query's words
it matches. Results that match no word are left out; ties keep the catalogue's order.
Pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TypeVar

__all__ = ["MAX_QUERY_LENGTH", "rank", "score", "words"]

T = TypeVar("T")

#: Longer queries are refused (400): a search query is a few words.
MAX_QUERY_LENGTH = 1000
_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    """The lowercase words of ``text`` (letters and digits, in any script)."""
    return [word.casefold() for word in _WORD.findall(text)]


def score(query: Sequence[str], fields: Iterable[tuple[str, float]]) -> float:
    """The score of one result for the query's ``words``: for each query word, the weight
    of the heaviest field with a word starting with it, summed, over the number of query
    words. 0 when nothing matches or the query has no words."""
    if not query:
        return 0.0
    field_words = [(set(words(text)), weight) for text, weight in fields]
    total = 0.0
    for term in query:
        total += max(
            (weight for found, weight in field_words if any(w.startswith(term) for w in found)),
            default=0.0,
        )
    return round(total / len(query), 6)


def rank(scored: Iterable[tuple[T, float]], limit: int | None = None) -> list[tuple[T, float]]:
    """The results that scored above 0, best first (stable: ties keep their order), at
    most ``limit`` of them."""
    kept = [(item, value) for item, value in scored if value > 0]
    kept.sort(key=lambda pair: -pair[1])
    return kept if limit is None else kept[:limit]
