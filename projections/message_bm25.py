"""BM25 over a list of message texts, with each text's terms remembered by the process.

Keyword message search scores every hot message of every searched session on every
query, with document frequencies over those messages only (docs/search.md), so it cannot
use the search index's postings. Tokenizing (NFKC, case folding, the word pattern and the
stemmer) was most of a search's time over many sessions: a hot message is scored again
by every later search, so its terms are kept in a bounded LRU memo keyed by the text
itself. A text's terms are a pure function of it, so the memo can never be stale: an
edited, forgotten or replayed message is simply another key, or one no longer asked for.
"""

from __future__ import annotations

import functools
import sys

from .search import bm25 as term_score
from .search import idf_of
from .tokenize import tokens

MEMO_TEXTS = 65_536
"""Texts whose terms are kept: about 400 bytes each (terms interned, so shared between
texts), some 25 MB. More hot messages than this per search scan past the memo (an LRU
read in a cycle keeps nothing): they cost the tokenizing they cost without it."""


@functools.lru_cache(maxsize=MEMO_TEXTS)
def terms(text: str) -> tuple[str, ...]:
    """``tokens(text)`` as a tuple of interned strings (cached; never mutate)."""
    return tuple(sys.intern(term) for term in tokens(text))


def bm25(query: str, texts: list[str]) -> list[float]:
    """BM25 of ``query`` against each of ``texts``, statistics over ``texts`` alone."""
    words = sorted(set(tokens(query)))
    if not texts or not words:
        return [0.0] * len(texts)
    # Only the query's terms are counted (tuple.count, in C): a Counter of every term of
    # every message cost as much as tokenizing them. The same sums, in the same order.
    lengths, counts = [], []
    for text in texts:
        found = terms(text)
        lengths.append(len(found))
        counts.append([found.count(w) for w in words])
    n = len(texts)
    avgdl = max(1e-9, sum(lengths) / n)
    df = [sum(1 for c in counts if c[k]) for k in range(len(words))]
    idf = [idf_of(n, d) for d in df]
    out = []
    for length, tfs in zip(lengths, counts, strict=True):
        score = 0.0
        for k, tf in enumerate(tfs):
            if tf:
                score += term_score(tf, length, avgdl, idf[k])  # the index's own formula
        out.append(score)
    return out
