"""Read-side keyword search: BM25 over the per-owner inverted index, with recency and
importance boosts (docs/search.md gives the formula and why).

One search is three pipelined round trips whatever the corpus size: (1) the newest
:data:`MAX_POSTINGS` live postings of each query token, the live-posting counts, the
live document count and the length counters, for the owner and each shared namespace;
(2) the metadata of every candidate, which drops postings of deleted, expired or
superseded versions (no ghost hits); (3) the bodies of the page's hits.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from memstream.producers import keys
from memstream.producers.errors import InvalidInputError

from .base import Query
from .codec import split_versioned
from .items import KINDS, item_key
from .ops import VERSION_LEN
from .search_index import TF_SCALE, live_key, meta_key, posting_key, stat_key
from .tokenize import tokens

K1 = 1.2
B = 0.75
W_IMPORTANCE = 0.5
W_RECENCY = 0.5
HALF_LIFE_MS = 7 * 86_400_000
MAX_POSTINGS = 1000
"""Per token and owner, only the newest 1,000 live postings are scored (bounded work);
the token's document frequency still counts all of them."""
MAX_QUERY_TOKENS = 32
DIGITS = 9
"""Scores are compared rounded to 9 decimals, then by owner and item: a deterministic
order that a reference implementation can reproduce exactly."""


@dataclass(frozen=True, slots=True)
class Filters:
    types: tuple[str, ...] = KINDS
    tags: tuple[str, ...] = ()
    since_ms: int | None = None
    success: bool | None = None


@dataclass(frozen=True, slots=True)
class Scope:
    """One owner's keys in the active version."""

    owner: str
    pk: keys.Projection


@dataclass(slots=True)
class Candidate:
    owner: str
    ref: bytes
    tfs: dict[str, int] = field(default_factory=dict)
    expiry: dict[str, int] = field(default_factory=dict)
    meta: list[Any] | None = None


def check_filters(
    types: Sequence[str] | None, tags: Sequence[str], since_ms: int | None, success: bool | None
) -> Filters:
    if isinstance(types, str):  # one type named alone, not its letters
        types = (types,)
    chosen = tuple(KINDS if types is None else types)
    for kind in chosen:
        if kind not in KINDS:
            raise InvalidInputError("types", f"unknown type {kind!r}; known: {', '.join(KINDS)}")
    if not chosen:
        raise InvalidInputError("types", "must name at least one type", list(chosen))
    return Filters(tuple(sorted(set(chosen))), tuple(sorted(set(tags))), since_ms, success)


def query_tokens(query: str) -> list[str]:
    if not isinstance(query, str) or not query.strip():
        raise InvalidInputError("query", "must be a non-empty string", query)
    return sorted(set(tokens(query)))[:MAX_QUERY_TOKENS]


def check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise InvalidInputError("limit", "must be an integer between 1 and 1000", limit)
    return limit


def bm25(tf: int, dl: int, avgdl: float, idf: float) -> float:
    return idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * dl / avgdl))


def idf_of(n_docs: int, df: int) -> float:
    df = min(df, n_docs)
    return math.log(1 + (n_docs - df + 0.5) / (df + 0.5))


def boost(importance: float, ts_ms: int, now_ms: int) -> float:
    age = max(0, now_ms - ts_ms)
    decay: float = 0.5 ** (age / HALF_LIFE_MS)
    return (1 + W_IMPORTANCE * importance) * (1 + W_RECENCY * decay)


def _fingerprint(words: list[str], f: Filters, owners: list[str]) -> str:
    raw = msgpack.packb([words, list(f.types), list(f.tags), f.since_ms, f.success, owners])
    return hashlib.sha1(raw, usedforsecurity=False).hexdigest()[:16]


def encode_cursor(fp: str, as_of_ms: int, key: tuple[float, str, str]) -> str:
    return base64.urlsafe_b64encode(msgpack.packb([fp, as_of_ms, *key])).decode().rstrip("=")


def decode_cursor(cursor: str, fp: str) -> tuple[int, tuple[float, str, str]]:
    """The first page's scoring time, and the sort key after which the next page starts;
    anything else is refused."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        got, as_of, score, owner, ref = msgpack.unpackb(raw)
        key = (float(score), str(owner), str(ref))
        as_of = int(as_of)
    except (ValueError, TypeError, binascii.Error, msgpack.ExtraData) as e:
        raise InvalidInputError("cursor", "is not a cursor returned by search", cursor) from e
    if got != fp:
        raise InvalidInputError("cursor", "belongs to another query or filter set", cursor)
    return as_of, key


@dataclass(slots=True)
class SearchPlan:
    """One search: its scope, words, filters and page; builds the three stages."""

    scopes: Sequence[Scope]
    words: list[str]
    filters: Filters
    limit: int
    now_ms: int
    cursor: str | None = None
    fp: str = ""
    after: tuple[float, str, str] | None = None
    as_of_ms: int = 0
    """Recency is scored as of the first page's time, so that later pages rank with the
    very same scores (liveness still uses the current time)."""
    keep_ranked: bool = False
    """Stop after ranking: the result is ``{"ranked": [(score, owner, ref, candidate)]}``,
    every filtered hit unpaged (hybrid search fuses it with the semantic ranking)."""
    n_docs: int = 0
    avgdl: float = 1.0
    truncated: dict[tuple[str, str], int] = field(default_factory=dict)
    cands: list[Candidate] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.fp = _fingerprint(self.words, self.filters, [s.owner for s in self.scopes])
        self.as_of_ms = self.now_ms
        if self.cursor is not None:
            self.as_of_ms, self.after = decode_cursor(self.cursor, self.fp)

    def query(self) -> Query[dict[str, Any]]:
        live_min = (self.now_ms + 1) * TF_SCALE
        commands: list[tuple[Any, ...]] = []
        for s in self.scopes:
            for w in self.words:
                post = posting_key(s.pk, s.owner, w)
                commands.append(("ZRANGE", post, "+inf", live_min, "BYSCORE", "REV",
                                 "LIMIT", 0, MAX_POSTINGS, "WITHSCORES"))  # fmt: skip
                commands.append(("ZCOUNT", post, live_min, "+inf"))
            commands.append(("ZCOUNT", live_key(s.pk, s.owner), f"({self.now_ms}", "+inf"))
            commands.append(("HMGET", stat_key(s.pk, s.owner), "docs", "len"))
        return Query(commands, self._postings)

    def _postings(self, replies: list[Any]) -> Query[dict[str, Any]]:
        # Hot path (thousands of postings): plain dicts and bytes, no per-posting objects.
        docs = length = 0
        i = 0
        metas: list[tuple[Any, ...]] = []
        for s in self.scopes:
            found: dict[bytes, Candidate] = {}
            for w in self.words:
                flat, live = replies[i], int(replies[i + 1])
                i += 2
                for member, score in zip(flat[0::2], flat[1::2], strict=True):
                    sc = int(float(score))
                    c = found.get(member)
                    if c is None:
                        c = found[member] = Candidate(s.owner, member)
                    c.tfs[w] = sc % TF_SCALE
                    c.expiry[w] = sc // TF_SCALE
                if len(flat) // 2 < live:
                    self.truncated[(s.owner, w)] = live
            self.n_docs += int(replies[i])
            docs += int(replies[i + 1][0] or 0)
            length += int(replies[i + 1][1] or 0)
            i += 2
            if found:
                self.cands += found.values()
                metas.append(("HMGET", meta_key(s.pk, s.owner), *found))
        self.avgdl = length / docs if docs else 1.0
        return Query(metas, self._with_meta)

    def _with_meta(self, replies: list[Any]) -> dict[str, Any] | Query[dict[str, Any]]:
        now = self.now_ms
        values = [v for reply in replies for v in reply]
        for c, raw in zip(self.cands, values, strict=True):
            if raw is not None:
                meta = msgpack.unpackb(raw[VERSION_LEN:])  # a tombstone unpacks to None
                if meta is not None and meta[3] > now:
                    c.meta = meta
        if self.keep_ranked:
            return {"ranked": self._ranked()}
        return self._page()

    def _idf(self) -> dict[str, float]:
        """Document frequencies over live versions only: postings of deleted, expired or
        superseded versions are not counted (a truncated list counts its live postings)."""
        counted: dict[tuple[str, str], int] = {}
        for c in self.cands:
            if c.meta is not None:
                exp = c.meta[3]
                for w, posted in c.expiry.items():
                    if posted == exp:  # a posting of the live version, not an older one
                        counted[(c.owner, w)] = counted.get((c.owner, w), 0) + 1
        counted.update(self.truncated)
        df: dict[str, int] = {}
        for (_, w), n in counted.items():
            df[w] = df.get(w, 0) + n
        return {w: idf_of(self.n_docs, n) for w, n in df.items()}

    def _ranked(self) -> list[tuple[float, str, str, Candidate]]:
        idf, avgdl, as_of, f = self._idf(), self.avgdl, self.as_of_ms, self.filters
        plain = f == Filters(types=f.types) and set(f.types) == set(KINDS)
        ranked = []
        for c in self.cands:
            m = c.meta
            if m is None or not (plain or _passes(m, f)):
                continue
            _, _, ts, exp, dl, importance = m[:6]
            norm = K1 * (1 - B + B * dl / avgdl)
            base = 0.0
            expiry = c.expiry
            for w, tf in c.tfs.items():
                if expiry[w] == exp:  # the same arithmetic as bm25(), inlined for speed
                    base += idf[w] * tf * (K1 + 1) / (tf + norm)
            if base > 0:
                score = round(base * boost(importance, ts, as_of), DIGITS)
                ranked.append((score, c.owner, c.ref.decode(), c))
        return ranked

    def _page(self) -> Query[dict[str, Any]]:
        ranked = self._ranked()
        total = len(ranked)
        if self.after is not None:
            a = self.after
            ranked = [t for t in ranked if (-t[0], t[1], t[2]) > (-a[0], a[1], a[2])]
        # Only the page (and one more, to know there is a next page) needs ordering.
        page = heapq.nsmallest(self.limit + 1, ranked, key=lambda t: (-t[0], t[1], t[2]))
        more = len(page) > self.limit
        page = page[: self.limit]
        nxt = encode_cursor(self.fp, self.as_of_ms, page[-1][:3]) if more and page else None
        pks = {s.owner: s.pk for s in self.scopes}
        commands = []
        for _, owner, _, c in page:
            assert c.meta is not None
            commands.append(("HGET", item_key(pks[owner], owner, c.meta[0], c.meta[1]), "doc"))

        def bodies(replies: list[Any]) -> dict[str, Any]:
            hits = []
            for (score, owner, _, c), raw in zip(page, replies, strict=True):
                assert c.meta is not None
                log_id, body = split_versioned(raw) if raw is not None else ("", None)
                if body is None:
                    continue  # deleted or expired between the round trips
                hits.append({"owner": owner, "type": c.meta[0], "id": c.meta[1],
                             "score": score, "log_id": log_id, "item": body})  # fmt: skip
            return {"hits": hits, "cursor": nxt, "total": total, "as_of_ms": self.as_of_ms}

        return Query(commands, bodies)


def _passes(meta: list[Any], f: Filters) -> bool:
    kind, _, ts, _, _, _, success, tags = meta
    if kind not in f.types or (f.since_ms is not None and ts < f.since_ms):
        return False
    if f.success is not None and success is not f.success:
        return False
    return all(t in tags for t in f.tags)
