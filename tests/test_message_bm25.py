"""Message BM25 (projections/message_bm25.py) scores exactly as the Counter-based loop it
replaced, term memo or not."""

from __future__ import annotations

import math
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from memstream.projections.message_bm25 import bm25, terms
from memstream.projections.search import K1, B
from memstream.projections.tokenize import tokens

WORDS = ["train", "trains", "Sintra", "the", "disk", "full", "Ünïcode", "ﬁle", "x" * 70]


def _old_bm25(query: str, texts: list[str]) -> list[float]:
    """reads_vectors.bm25 at commit a9c8620."""
    words = sorted(set(tokens(query)))
    docs = [Counter(tokens(text)) for text in texts]
    if not docs or not words:
        return [0.0] * len(docs)
    avgdl = max(1e-9, sum(sum(d.values()) for d in docs) / len(docs))
    df = {w: sum(1 for d in docs if w in d) for w in words}
    out = []
    for d in docs:
        length, score = sum(d.values()), 0.0
        for w in words:
            tf = d.get(w, 0)
            if tf:
                idf = math.log(1 + (len(docs) - df[w] + 0.5) / (df[w] + 0.5))
                score += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * length / avgdl))
        out.append(score)
    return out


text_st = st.lists(st.sampled_from(WORDS), max_size=12).map(" ".join)


@given(text_st, st.lists(text_st, max_size=15))
def test_bm25_is_the_old_loop(query: str, texts: list[str]) -> None:
    assert bm25(query, texts) == _old_bm25(query, texts)
    assert bm25(query, texts) == _old_bm25(query, texts)  # the second time from the memo


def test_terms_are_the_tokens_interned_and_remembered() -> None:
    text = "The trains to Sintra, trains!"
    assert list(terms(text)) == tokens(text)
    assert terms(text) is terms("The trains to Sintra, trains!")
    assert terms(text)[0] is terms("a train")[0]  # one string per term, shared
