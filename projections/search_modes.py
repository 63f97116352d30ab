"""``Reader.search`` in its three modes: keyword (BM25), semantic (cosine over the stored
vectors) and hybrid (reciprocal rank fusion of the two); docs/search.md says why.

- **keyword**: :class:`~memstream.projections.search.SearchPlan`, unchanged.
- **semantic**: the query is embedded by the reader's embedder (the workers' one), and
  every live vector of the chosen types, of the owner and each shared namespace, is
  scored by dot product (the rows are unit vectors: cosine) with numpy: exact top-k.
- **hybrid**: RRF with k = 60 over the first :data:`DEPTH` hits of each ranking:
  ``score = sum over the rankings that hold the hit of 1 / (60 + rank)``. Ranks, not
  scores, are fused: BM25 is unbounded and cosine is not, and RRF needs no weights to
  tune per corpus (Cormack et al., 2009, where k = 60 comes from).

The default (``mode=None``) is hybrid when the owner or a shared namespace has vectors of
the reader's embedder, else keyword. Filters select hits in every mode; tag, time and
success filters read the search index's metadata of the semantic candidates, best first,
until the page is full. Pages are cursors over one deterministic order: score rounded to
9 digits, then owner, then ``<type>:<id>``.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import msgpack

from memstream.producers.errors import InvalidInputError

from .base import AsyncRunner, Query
from .codec import split_versioned
from .items import item_key
from .ops import VERSION_LEN
from .search import DIGITS, Filters, Scope, SearchPlan, _fingerprint, _passes, decode_cursor
from .search import encode_cursor as cursor_of
from .search_index import meta_key
from .vector_index import Found, Space, VectorCache, matrices, space_error
from .vectors import space_of

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from .embedders import Embedder

SearchMode = Literal["keyword", "semantic", "hybrid"]
MODES = ("keyword", "semantic", "hybrid")
RRF_K = 60
DEPTH = 100
"""Hits of each ranking that hybrid fuses: a hybrid search pages through at most 200."""
Hit = tuple[float, str, str]
"""(score, owner, ``<type>:<id>``)."""


@dataclass(slots=True)
class _Reader:
    """What a reader keeps for semantic search: its embedder and its matrices."""

    embedder: Embedder | None
    space: Space | None
    cache: VectorCache


async def _state(r: AsyncRunner) -> _Reader:
    state: _Reader | None = r.__dict__.get("_vector_state")
    if state is None:
        from .embedders import make_embedder

        # Loading the model takes about a second: never on the event loop.
        embedder = await asyncio.to_thread(make_embedder, r.settings)
        space = None
        if embedder is not None:
            space = Space(space_of(embedder.name, embedder.dimension), embedder.name,
                          embedder.dimension)  # fmt: skip
        state = r.__dict__["_vector_state"] = _Reader(embedder, space, VectorCache())
    return state


def check_mode(mode: str | None) -> None:
    if mode is not None and mode not in MODES:
        raise InvalidInputError("mode", f"must be one of {', '.join(MODES)} (or None)", mode)


def _key(hit: Hit) -> tuple[float, str, str]:
    return -hit[0], hit[1], hit[2]


def _top(scores: npt.NDArray[np.float64], n: int) -> list[int]:
    import numpy as np

    if n >= len(scores):
        return list(range(len(scores)))
    return [int(i) for i in np.argpartition(-scores, n)[:n]]


class SemanticRanking:
    """Every live vector of the scope scored against the query, read best first.

    Scoring is one matrix-vector product per (owner, kind); labels are made only for the
    hits read (a Python object per row would cost more than the product)."""

    def __init__(self, found: Sequence[Found], query: Any, now_ms: int) -> None:
        import numpy as np

        self.found = [f for f in found if f.matrix is not None and f.matrix.refs]
        scores, parts, rows = [], [], []
        for n, f in enumerate(self.found):
            m = f.matrix
            assert m is not None
            live = np.nonzero(m.expiry > now_ms)[0]
            scores.append(np.round((m.rows @ query)[live].astype(np.float64), DIGITS))
            parts.append(np.full(len(live), n, np.int32))
            rows.append(live)
        self.scores = np.concatenate(scores) if scores else np.zeros(0)
        self.parts = np.concatenate(parts) if parts else np.zeros(0, np.int32)
        self.rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self.scores)

    def _hit(self, j: int) -> Hit:
        f = self.found[int(self.parts[j])]
        assert f.matrix is not None
        return float(self.scores[j]), f.owner, f"{f.kind}:{f.matrix.refs[int(self.rows[j])]}"

    def best(self, n: int, after: tuple[float, str, str] | None = None) -> list[Hit]:
        """The ``n`` best hits after the sort key ``after``, in order."""
        import numpy as np

        index = np.arange(len(self.scores))
        ties = 0
        if after is not None:
            index = index[self.scores <= after[0]]  # ties are settled by owner and id below
            ties = int(np.count_nonzero(self.scores[index] == after[0]))
        hits = [self._hit(int(index[i])) for i in _top(self.scores[index], n + ties)]
        if after is not None:
            hits = [h for h in hits if _key(h) > (-after[0], after[1], after[2])]
        return heapq.nsmallest(n, hits, key=_key)


@dataclass(frozen=True, slots=True)
class Request:
    """One search as asked: its scopes, query, filters, page size and clock."""

    scopes: Sequence[Scope]
    query: str
    words: list[str]
    filters: Filters
    limit: int
    now_ms: int


async def _filtered(
    r: AsyncRunner, q: Request, ranking: SemanticRanking, want: int,
    after: tuple[float, str, str] | None = None,
) -> list[Hit]:  # fmt: skip
    """The first ``want`` semantic hits (after ``after``) that pass the filters; with
    tag, time or success filters they are checked against the search index's metadata
    in growing chunks, best first."""
    f = q.filters
    if not f.tags and f.since_ms is None and f.success is None:
        return ranking.best(want, after)
    pks = {s.owner: s.pk for s in q.scopes}
    out: list[Hit] = []
    n, seen = max(4 * want, 64), 0
    while True:
        hits = ranking.best(n, after)
        chunk = hits[seen:]
        if chunk:
            commands = [("HGET", meta_key(pks[owner], owner), ref) for _, owner, ref in chunk]
            metas = await r.run(Query(commands, lambda replies: replies))
            for hit, raw in zip(chunk, metas, strict=True):
                meta = msgpack.unpackb(raw[VERSION_LEN:]) if raw is not None else None
                if meta is not None and meta[3] > q.now_ms and _passes(meta, f):
                    out.append(hit)
        seen = len(hits)
        if len(out) >= want or len(hits) < n:
            return out[:want]
        n *= 4


def _fuse(keyword: Sequence[Hit], semantic: Sequence[Hit]) -> list[Hit]:
    scores: dict[tuple[str, str], float] = {}
    for ranking in (keyword, semantic):
        for rank, (_, owner, ref) in enumerate(ranking, 1):
            scores[owner, ref] = scores.get((owner, ref), 0.0) + 1.0 / (RRF_K + rank)
    fused = [(round(s, DIGITS), owner, ref) for (owner, ref), s in scores.items()]
    return sorted(fused, key=_key)


async def _embed(state: _Reader, query: str) -> Any:
    assert state.embedder is not None
    if state.embedder.name.startswith("openai:"):  # a network call: off the loop
        return (await asyncio.to_thread(state.embedder.embed, [query]))[0]
    return state.embedder.embed([query])[0]


async def _keyword(r: AsyncRunner, q: Request, cursor: str | None) -> dict[str, Any]:
    plan = SearchPlan(q.scopes, q.words, q.filters, q.limit, q.now_ms, cursor)
    result: dict[str, Any] = await r.run(plan.query())
    return {**result, "mode": "keyword"}


async def _hybrid(r: AsyncRunner, q: Request, ranking: SemanticRanking, as_of: int) -> list[Hit]:
    plan = SearchPlan(q.scopes, q.words, q.filters, 1, q.now_ms, keep_ranked=DEPTH)
    plan.as_of_ms = as_of  # later pages score recency as the first one did
    keyword: list[Hit] = (await r.run(plan.query()))["ranked"] if q.words else []
    return _fuse(keyword, await _filtered(r, q, ranking, DEPTH))


async def run_search(r: AsyncRunner, q: Request, *, cursor: str | None,
                     mode: SearchMode | None) -> dict[str, Any]:  # fmt: skip
    """One page of ``Reader.search`` in ``mode`` (None: hybrid when vectors exist)."""
    check_mode(mode)
    if mode == "keyword":
        return await _keyword(r, q, cursor)
    state = await _state(r)
    found: list[Found] = []
    if state.space is not None:
        pairs = [(s.owner, s.pk) for s in q.scopes]
        found = await r.run(matrices(state.cache, pairs, q.filters.types, state.space))
    if mode is None:
        if not any(x.matrix is not None and x.matrix.refs for x in found):
            return await _keyword(r, q, cursor)
        mode = "hybrid"
    if state.space is None:
        raise InvalidInputError("mode", f"{mode} search needs an embedder (embedder=none)", mode)
    error = space_error(found, state.space)
    if error is not None:
        raise error
    fp = _fingerprint([*q.words, f"\0{mode}", q.query], q.filters, [s.owner for s in q.scopes])
    as_of, after = (q.now_ms, None) if cursor is None else decode_cursor(cursor, fp)
    ranking = SemanticRanking(found, await _embed(state, q.query), q.now_ms)
    if mode == "semantic":
        hits = await _filtered(r, q, ranking, q.limit + 1, after)
        total = len(ranking)
    else:
        fused = await _hybrid(r, q, ranking, as_of)
        total = len(fused)
        if after is not None:
            fused = [h for h in fused if _key(h) > (-after[0], after[1], after[2])]
        hits = fused[: q.limit + 1]
    page = hits[: q.limit]
    nxt = cursor_of(fp, as_of, page[-1]) if len(hits) > q.limit and page else None
    meta = {"cursor": nxt, "total": total, "as_of_ms": as_of, "mode": mode}
    return await r.run(_bodies(q.scopes, page, meta))


def _bodies(
    scopes: Sequence[Scope], page: Sequence[Hit], meta: dict[str, Any]
) -> Query[dict[str, Any]]:
    pks = {s.owner: s.pk for s in scopes}
    refs = [(owner, *ref.split(":", 1)) for _, owner, ref in page]
    commands = [("HGET", item_key(pks[o], o, kind, i), "doc") for o, kind, i in refs]

    def parse(replies: list[Any]) -> dict[str, Any]:
        hits = []
        for (score, _, _), (owner, kind, item_id), raw in zip(page, refs, replies, strict=True):
            log_id, body = split_versioned(raw) if raw is not None else ("", None)
            if body is None:
                continue  # deleted or expired since its vector was read
            hits.append({"owner": owner, "type": kind, "id": item_id, "score": score,
                         "log_id": log_id, "item": body})  # fmt: skip
        return {"hits": hits, **meta}

    return Query(commands, parse)
