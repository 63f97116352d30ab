"""Conversation search: ``search_messages`` over a session's (or every session's) history.

- ``keyword``: BM25 (the parameters of :mod:`memstream.projections.search`) over the
  stemmed terms of the messages the history read model holds (the newest
  ``history_cap`` of each session, every window read in one plan: :mod:`.message_hot`),
  document frequencies over those candidates (:mod:`.message_bm25`); with ``cold=True``
  also over the older messages read from the log and the archive (:mod:`.message_walk`).
- ``semantic``: cosine similarity over the message vectors the worker stored
  (:mod:`.vectors`): every message embedded since the vectors exist, not only the hot
  window; the reader embeds only the query. A hit's body comes from the history read
  model, or from the log when the message is older than the hot window, or through the
  cold tier when the log entry is already archived (one segment read per such hit, at
  most ``limit``/100 of them). Messages before the session's
  last ``history.cleared``, those past the history TTL, and those of a session whose
  history has expired (:mod:`.message_life`) are left out, by numpy masks over the
  matrix's rows (:mod:`.message_rows`).
- ``hybrid``: reciprocal rank fusion (k = 60) of the two rankings' first 100 hits.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from memstream.producers import keys
from memstream.producers.codec import DecodeError
from memstream.producers.entry import decode_entry
from memstream.producers.errors import InvalidInputError
from memstream.producers.events_messages import MessageAppended
from memstream.producers.settings import Settings

from .base import Query
from .codec import unpack
from .history import history_key, message_body, watermark
from .message_bm25 import bm25
from .message_hot import Windows, hot_windows, owner_windows
from .message_life import living_rows
from .message_rows import kept_rows, ref_index, top
from .message_walk import COLD_LIMIT, check_cold, older_messages, windows
from .ops import VERSION_LEN, log_id_of, sortable
from .results import Message
from .search import DIGITS
from .search_modes import DEPTH, RRF_K, _embed, _state
from .vector_index import Found, matrices, space_error
from .vectors import MESSAGE, message_text

__all__ = ["MessageHit", "MessageMode", "bm25", "message_text"]

MessageMode = Literal["keyword", "semantic", "hybrid"]
MAX_MESSAGE_HITS = 100


@dataclass(frozen=True, slots=True)
class MessageHit:
    """One matching message: its ``session``, ``log_id``, ``score`` (higher is better;
    BM25 for keyword, cosine for semantic, the fused rank score for hybrid) and the
    ``message`` as history returns it (a read-only mapping)."""

    session: str
    log_id: str
    score: float
    message: Mapping[str, Any]


class _HistoryRunner(Protocol):
    settings: Settings

    async def run(self, query: Query[Any]) -> Any: ...

    async def _pk(self, owner: str) -> keys.Projection: ...


async def _keyword(
    r: _HistoryRunner, owner: str, query: str, session: str | None, *, cold_limit: int, depth: int
) -> list[MessageHit]:
    """The ``depth`` best by BM25 over the hot windows, and with ``cold_limit`` also over
    up to that many log entries older than them (:mod:`.message_walk`), one set of
    statistics over both."""
    pk, cap = await r._pk(owner), r.settings.history_cap
    # Every window in one plan (.message_hot): a round trip per session was most of the
    # time of a search over many sessions.
    plan = (
        owner_windows(pk, owner, cap) if session is None else hot_windows(pk, owner, [session], cap)
    )
    pages: Windows = await r.run(plan)
    found = [(name, message) for name, page in pages.items() for message in page]
    hot = len(found)
    if cold_limit:
        hot_from = windows(pages, r.settings.history_cap)
        found += await older_messages(r, owner, hot_from, cold_limit)
    scores = bm25(query, [message_text(message) for _, message in found])
    # (score descending, log id): log ids are unique, so the n never decides.
    best = heapq.nsmallest(depth, ((-score, found[n][1]["log_id"], n)
                                   for n, score in enumerate(scores) if score > 0))  # fmt: skip
    hits = []
    for _, log_id, n in best:
        name, message = found[n]
        # A hot message is returned as history() returns it (a Message); an older one as
        # the walk read it. Only the returned few are wrapped.
        hits.append(
            MessageHit(name, log_id, scores[n], Message.of(message) if n < hot else message)
        )
    return hits


async def _semantic(
    r: _HistoryRunner, owner: str, query: str, session: str | None, depth: int
) -> list[MessageHit]:
    """The ``depth`` nearest stored message vectors, with their bodies."""
    import numpy as np

    state = await _state(r)  # type: ignore[arg-type]
    if state.space is None:
        raise InvalidInputError("mode", "semantic search needs an embedder (embedder=none)")
    if not r.settings.embed_messages:
        raise InvalidInputError(
            "mode", "semantic message search needs embed_messages on (MEMSTREAM_EMBED_MESSAGES"
            "=1) for the workers and this reader, then `memstream replay`"
        )  # fmt: skip
    pk = await r._pk(owner)
    found: list[Found] = await r.run(matrices(state.cache, [(owner, pk)], [MESSAGE], state.space))
    error = space_error(found, state.space)
    if error is not None:
        raise error
    m = found[0].matrix
    if m is None or not m.refs:
        return []
    marks: dict[bytes, bytes] = await r.run(
        Query([("HGETALL", watermark(pk, owner, "s")[0])], lambda replies: replies[0])
    )
    index = ref_index(r, m.refs)
    keep = kept_rows(index, m.expiry, marks, session, _now_ms())
    keep = await living_rows(r, pk, owner, index, keep)  # the session's TTL (.message_life)
    rows = np.flatnonzero(keep)
    if not len(rows):
        return []
    query_vector = await _embed(state, query)
    # Every row kept (the usual case) needs no copy of the matrix: the same product.
    product = m.rows @ query_vector if len(rows) == len(m.refs) else m.rows[rows] @ query_vector
    sims = np.round(product.astype(np.float64), DIGITS)
    picked = top(sims, rows, m.refs, depth)
    found_bodies: list[dict[str, Any] | None] = await r.run(_bodies(pk, owner, picked))
    hits = []
    for (ref, score), hot in zip(picked, found_bodies, strict=True):
        name, _, version = ref.partition(":")
        # Neither hot history nor hot log: the tier moved it to an archive. At most
        # ``depth`` such reads, each one segment (cached after the first).
        body = hot if hot is not None else await _from_cold(r, pk.p, owner, version)
        if body is not None:
            log_id = log_id_of(version)
            hits.append(MessageHit(name, log_id, score, {"log_id": log_id, **body}))
    return hits


def _before_id(log_id: str) -> str:
    """The id just before ``log_id`` (the cold log's ``since`` is exclusive)."""
    ms, _, seq = log_id.partition("-")
    if int(seq) > 0:
        return f"{ms}-{int(seq) - 1}"
    return f"{int(ms) - 1}-{2**64 - 1}"


async def _from_cold(r: Any, p: int, owner: str, version: str) -> dict[str, Any] | None:
    """The message at ``version`` read through the cold tier (archived segment)."""
    from .reads_log import _cold

    log_id = log_id_of(version)
    async for found_id, fields in _cold(r).forward(p, owner, _before_id(log_id), log_id,
                                                   page=1):  # fmt: skip
        if found_id == log_id:
            return _from_log(owner, version, [(found_id, fields)])
        break
    return None


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


def _bodies(
    pk: keys.Projection, owner: str, picked: list[tuple[str, float]]
) -> Query[list[dict[str, Any] | None]]:
    """Each hit's message from the history read model, else from the (hot) log; None
    where both miss (archived, or gone)."""
    commands: list[tuple[Any, ...]] = []
    for ref, _ in picked:
        name, _, version = ref.partition(":")
        lo = b"[" + version.encode()
        commands.append(("ZRANGE", history_key(pk, owner, name), lo, lo + b"\xff", "BYLEX"))
        log_id = log_id_of(version)
        commands.append(("XRANGE", keys.log(pk.p, owner), log_id, log_id))

    def parse(replies: list[Any]) -> list[dict[str, Any] | None]:
        bodies = []
        for n, (ref, _) in enumerate(picked):
            version = ref.partition(":")[2]
            hot, logged = replies[2 * n], replies[2 * n + 1]
            bodies.append(_from_history(hot) or _from_log(owner, version, logged))
        return bodies

    return Query(commands, parse)


def _from_history(members: Any) -> dict[str, Any] | None:
    if not isinstance(members, list) or not members:
        return None
    body: dict[str, Any] = unpack(members[0][VERSION_LEN:])
    return body


def _from_log(owner: str, version: str, entries: Any) -> dict[str, Any] | None:
    if not isinstance(entries, list) or not entries:
        return None
    log_id = log_id_of(version)
    try:
        event = decode_entry(owner, log_id, entries[0][1])
    except DecodeError:
        return None
    if not isinstance(event.event, MessageAppended) or sortable(log_id) != version:
        return None
    return message_body(event.event, event.ts_ms)


def _fuse(keyword: list[MessageHit], semantic: list[MessageHit]) -> list[MessageHit]:
    scores: dict[str, float] = {}
    by_id: dict[str, MessageHit] = {}
    for ranking in (keyword[:DEPTH], semantic[:DEPTH]):
        for rank, hit in enumerate(ranking, 1):
            scores[hit.log_id] = scores.get(hit.log_id, 0.0) + 1.0 / (RRF_K + rank)
            by_id.setdefault(hit.log_id, hit)
    fused = [MessageHit(h.session, h.log_id, round(scores[i], DIGITS), h.message)
             for i, h in by_id.items()]  # fmt: skip
    return sorted(fused, key=lambda h: (-h.score, sortable(h.log_id)))


class AsyncVectorReads:
    async def search_messages(
        self: Any,
        owner: str,
        query: str,
        session: str | None = None,
        *,
        mode: MessageMode = "keyword",
        limit: int = 10,
        cold: bool = False,
        cold_limit: int = COLD_LIMIT,
    ) -> list[MessageHit]:
        """Messages of ``owner``'s history matching ``query``, best first: in ``session``,
        or in every session when None; ``mode`` ``"keyword"`` (BM25, stemmed, over the
        hot history), ``"semantic"`` (cosine over the stored message vectors) or
        ``"hybrid"`` (rank fusion of both); at most ``limit`` hits (1..100). Keyword hits
        score above zero; semantic returns the ``limit`` nearest. ``cold=True`` makes the
        keyword ranking (keyword and hybrid modes) also read the messages older than the
        hot window, from the log and the archive, at most ``cold_limit`` log entries
        (1..1,000,000); semantic already reaches them."""
        if mode not in ("keyword", "semantic", "hybrid"):
            raise InvalidInputError("mode", "must be 'keyword', 'semantic' or 'hybrid'", mode)
        if (
            isinstance(limit, bool)
            or not isinstance(limit, int)
            or not 1 <= limit <= MAX_MESSAGE_HITS
        ):
            raise InvalidInputError("limit", f"must be 1..{MAX_MESSAGE_HITS}", limit)
        if session is not None:
            keys.check_id(session, "session")
        check_cold(cold, cold_limit)
        scan = cold_limit if cold else 0
        if mode == "keyword":
            return await _keyword(self, owner, query, session, cold_limit=scan, depth=limit)
        if mode == "semantic":
            return await _semantic(self, owner, query, session, limit)
        keyword = await _keyword(self, owner, query, session, cold_limit=scan, depth=DEPTH)
        semantic = await _semantic(self, owner, query, session, DEPTH)
        return _fuse(keyword, semantic)[:limit]


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
        cold: bool = False,
        cold_limit: int = COLD_LIMIT,
    ) -> list[MessageHit]:
        result: list[MessageHit] = self._call(self._async.search_messages(
            owner, query, session, mode=mode, limit=limit, cold=cold,
            cold_limit=cold_limit))  # fmt: skip
        return result

    search_messages.__doc__ = AsyncVectorReads.search_messages.__doc__
