"""Conversation search: ``search_messages`` over a session's (or every session's) history.

Interim design, until the vector read model of issue 17 exists: the candidates are the
messages the history read model holds (the newest ``history_cap`` of each session, not the
cold tier), scored at read time. ``keyword`` is BM25 (the parameters of
:mod:`memstream.projections.search`) over the stemmed terms of the message text, with
document frequencies taken over the candidates; ``semantic`` is the cosine similarity of
the settings' embedder (the query and the candidates are embedded here, which the vector
projection is to replace with stored vectors).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from memstream.producers.errors import InvalidInputError
from memstream.producers.settings import Settings

from .embedders import Embedder, make_embedder
from .search import K1, B
from .tokenize import tokens

MessageMode = Literal["keyword", "semantic"]
MAX_MESSAGE_HITS = 100


@dataclass(frozen=True, slots=True)
class MessageHit:
    """One matching message: its ``session``, ``log_id``, ``score`` (higher is better;
    BM25 for keyword, cosine for semantic) and the ``message`` as history returns it."""

    session: str
    log_id: str
    score: float
    message: dict[str, Any]


class _HistoryRunner(Protocol):
    settings: Settings

    async def history(
        self, owner: str, session: str, *, last: int = 20
    ) -> list[dict[str, Any]]: ...

    async def sessions(self, owner: str) -> list[dict[str, Any]]: ...


def message_text(message: dict[str, Any]) -> str:
    """The searchable text of a stored message: its content, or its text parts."""
    content = message.get("content", "")
    if isinstance(content, str):
        return content
    return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict)
                     and p.get("type") == "text")  # fmt: skip


def bm25(query: str, texts: list[str]) -> list[float]:
    """BM25 of ``query`` against each of ``texts``, statistics over ``texts`` alone."""
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


class AsyncVectorReads:
    _embedder: Embedder | None = None

    async def search_messages(
        self: Any,
        owner: str,
        query: str,
        session: str | None = None,
        *,
        mode: MessageMode = "keyword",
        limit: int = 10,
    ) -> list[MessageHit]:
        """Messages of ``owner``'s history matching ``query``, best first: in ``session``,
        or in every session when None; ``mode`` ``"keyword"`` (BM25, stemmed) or
        ``"semantic"`` (embedder cosine); at most ``limit`` hits (1..100). Keyword hits
        score above zero; semantic returns the ``limit`` nearest."""
        runner: _HistoryRunner = self
        if mode not in ("keyword", "semantic"):
            raise InvalidInputError("mode", "must be 'keyword' or 'semantic'", mode)
        if not 1 <= limit <= MAX_MESSAGE_HITS:
            raise InvalidInputError("limit", f"must be 1..{MAX_MESSAGE_HITS}", limit)
        if session is None:
            names = [s["session"] for s in await runner.sessions(owner)]
        else:
            names = [session]
        found: list[tuple[str, dict[str, Any]]] = []
        for name in names:
            page = await runner.history(owner, name, last=runner.settings.history_cap)
            found += [(name, message) for message in page]
        if not found:
            return []
        texts = [message_text(message) for _, message in found]
        if mode == "keyword":
            scores = bm25(query, texts)
        else:
            scores = self._semantic(runner.settings, query, texts)
        ranked = sorted(range(len(found)), key=lambda i: (-scores[i], found[i][1]["log_id"]))
        hits = [
            MessageHit(found[i][0], found[i][1]["log_id"], scores[i], found[i][1])
            for i in ranked
            if mode == "semantic" or scores[i] > 0
        ]
        return hits[:limit]

    def _semantic(self, settings: Settings, query: str, texts: list[str]) -> list[float]:
        if self._embedder is None:
            self._embedder = make_embedder(settings)
        if self._embedder is None:
            raise InvalidInputError("mode", "semantic search needs an embedder (embedder=none)")
        vectors = self._embedder.embed([query, *texts])
        return [float(x) for x in vectors[1:] @ vectors[0]]


class VectorReads:
    """Blocking twins of :class:`AsyncVectorReads` (same arguments, same results)."""

    def search_messages(
        self: Any,
        owner: str,
        query: str,
        session: str | None = None,
        *,
        mode: MessageMode = "keyword",
        limit: int = 10,
    ) -> list[MessageHit]:
        result: list[MessageHit] = self._call(
            self._async.search_messages(owner, query, session, mode=mode, limit=limit))  # fmt: skip
        return result

    search_messages.__doc__ = AsyncVectorReads.search_messages.__doc__
