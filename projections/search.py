"""Read-side keyword search: BM25 over the per-owner inverted index, with recency and
importance boosts (docs/search.md gives the formula and why).

One search is three pipelined round trips whatever the corpus size: (1) the newest
:data:`MAX_POSTINGS` live postings of each query token, the live-posting counts, the
live document count and the length counters, for the owner and each shared namespace;
(2) the metadata of every candidate, which drops postings of deleted, expired or
superseded versions (no ghost hits); (3) the bodies of the page's hits.

Scoring makes no object per candidate and keeps only the hits that can still make the
page (docs/search.md, "How the reader scores"): a 100,000-memory owner gives thousands of
candidates a search, and as many live objects woke the cyclic garbage collector.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
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
SLACK = 1e-6
"""A hit is skipped unscored only when its bound misses the page's floor by more than
this: far above the rounding to 9 decimals and the floating-point error of the bound."""
Hit = tuple[float, str, str]
"""(score, owner, ``<kind>:<id>``)."""


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
class Postings:
    """One scope's candidates: per query word with postings, ``<kind>:<id>`` -> posting
    score (expiry * TF_SCALE + tf), and their union, whose metadata is read."""

    scope: Scope
    lists: list[tuple[str, dict[bytes, int]]]
    refs: list[bytes]


@dataclass(slots=True)
class Live:
    """The live candidates of one scope that pass the filters, as parallel lists of plain
    numbers: no container per candidate, because thousands of them alive at once wake
    the cyclic garbage collector, whose full passes (tens of ms) were the search's p99."""

    postings: Postings
    index: dict[bytes, int] = field(default_factory=dict)
    """ref -> its position in the lists below."""
    refs: list[bytes] = field(default_factory=list)
    exps: list[int] = field(default_factory=list)
    lens: list[int] = field(default_factory=list)
    times: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)


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
    keep_ranked: int = 0
    """When positive, stop after ranking: the result is ``{"ranked": [(score, owner,
    ref)]}``, the best ``keep_ranked`` filtered hits in order, unpaged (hybrid search
    fuses them with the semantic ranking)."""
    n_docs: int = 0
    avgdl: float = 1.0
    truncated: dict[tuple[str, str], int] = field(default_factory=dict)
    postings: list[Postings] = field(default_factory=list)

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
        docs = length = 0
        i = 0
        metas: list[tuple[Any, ...]] = []
        for s in self.scopes:
            lists = []
            for w in self.words:
                flat, live = replies[i], int(replies[i + 1])
                i += 2
                if flat:  # scores are exact integers sent as doubles
                    scores = map(int, map(float, flat[1::2]))
                    lists.append((w, dict(zip(flat[0::2], scores, strict=True))))
                if len(flat) // 2 < live:
                    self.truncated[(s.owner, w)] = live
            self.n_docs += int(replies[i])
            docs += int(replies[i + 1][0] or 0)
            length += int(replies[i + 1][1] or 0)
            i += 2
            if lists:
                refs = list(dict.fromkeys(chain.from_iterable(post for _, post in lists)))
                self.postings.append(Postings(s, lists, refs))
                metas.append(("HMGET", meta_key(s.pk, s.owner), *refs))
        self.avgdl = length / docs if docs else 1.0
        return Query(metas, self._with_meta)

    def _with_meta(self, replies: list[Any]) -> dict[str, Any] | Query[dict[str, Any]]:
        lives, counted = self._live(replies)
        counted.update(self.truncated)
        df: dict[str, int] = {}
        for (_, w), n in counted.items():
            df[w] = df.get(w, 0) + n
        idf = {w: idf_of(self.n_docs, n) for w, n in df.items()}
        k = self.keep_ranked or self.limit + 1
        total, best = self._best(lives, idf, k)
        if self.keep_ranked:
            return {"ranked": best}
        return self._page(total, best)

    def _live(self, replies: list[Any]) -> tuple[list[Live], dict[tuple[str, str], int]]:
        """The live candidates that pass the filters, and the document frequency of each
        (owner, word) whose postings were all read: live versions only, whatever the
        filters (postings of deleted, expired or superseded versions are not counted)."""
        now, f = self.now_ms, self.filters
        plain = f == Filters(types=f.types) and set(f.types) == set(KINDS)
        lives, counted = [], {}
        for p, values in zip(self.postings, replies, strict=True):
            owner = p.scope.owner
            live = Live(p)
            versions: dict[bytes, int] = {}  # ref -> expiry of its live version
            for ref, raw in zip(p.refs, values, strict=True):
                if raw is None:
                    continue
                meta = msgpack.unpackb(raw[VERSION_LEN:])  # a tombstone unpacks to None
                if meta is None or meta[3] <= now:
                    continue
                versions[ref] = meta[3]
                if plain or _passes(meta, f):
                    live.index[ref] = len(live.refs)
                    live.refs.append(ref)
                    live.exps.append(meta[3])
                    live.times.append(meta[2])
                    live.lens.append(meta[4])
                    live.weights.append(meta[5])
            for w, post in p.lists:
                if (owner, w) not in self.truncated:
                    n = 0
                    for ref, sc in post.items():
                        if versions.get(ref) == sc // TF_SCALE:  # a posting of the live version
                            n += 1
                    counted[(owner, w)] = n
            lives.append(live)
        return lives, counted

    def _best(self, lives: list[Live], idf: dict[str, float], k: int) -> tuple[int, list[Hit]]:
        """The number of hits, and the ``k`` best after the cursor, in order.

        Only a hit that can still make the ``k`` best is kept as a tuple: the running
        k-th best score is a floor that rises as hits are scored."""
        avgdl, as_of, after = self.avgdl, self.as_of_ms, self.after
        total = 0
        floor: list[float] = []  # the k best scores so far (a min-heap)
        kept: list[tuple[float, str, bytes]] = []
        for live in lives:
            owner = live.postings.scope.owner
            index, exps = live.index, live.exps
            norms = [K1 * (1 - B + B * dl / avgdl) for dl in live.lens]
            # Word by word, in the query's word order: each hit sums its terms in the
            # same order as bm25() would, and each posting is looked at once.
            bases = [0.0] * len(norms)
            for w, post in live.postings.lists:
                weight = idf[w]
                for ref, sc in post.items():
                    j = index.get(ref)
                    if j is not None and exps[j] == sc // TF_SCALE:  # the live version's
                        tf = sc % TF_SCALE  # the same arithmetic as bm25(), inlined
                        bases[j] += weight * tf * (K1 + 1) / (tf + norms[j])
            for j, base in enumerate(bases):
                if base <= 0:
                    continue
                total += 1
                imp = live.weights[j]
                # Recency boosts at most x1.5: if even that misses the page, skip the pow.
                cap = base * ((1 + W_IMPORTANCE * imp) * (1 + W_RECENCY))
                if len(floor) == k and imp >= 0 and cap + SLACK < floor[0]:
                    continue
                score = round(base * boost(imp, live.times[j], as_of), DIGITS)
                if after is not None and (
                    score > after[0]
                    or (score == after[0] and (owner, live.refs[j].decode()) <= after[1:])
                ):
                    continue  # on an earlier page
                if len(floor) < k:
                    heapq.heappush(floor, score)
                elif score < floor[0]:
                    continue
                elif score > floor[0]:
                    heapq.heapreplace(floor, score)
                kept.append((score, owner, live.refs[j]))
        least = floor[0] if len(floor) == k else -math.inf
        best = heapq.nsmallest(k, (t for t in kept if t[0] >= least), key=_order)
        return total, [(score, owner, ref.decode()) for score, owner, ref in best]

    def _page(self, total: int, best: list[Hit]) -> Query[dict[str, Any]]:
        more = len(best) > self.limit
        page = best[: self.limit]
        nxt = encode_cursor(self.fp, self.as_of_ms, page[-1]) if more and page else None
        pks = {s.owner: s.pk for s in self.scopes}
        refs = [(owner, *ref.split(":", 1)) for _, owner, ref in page]
        commands = [("HGET", item_key(pks[o], o, kind, i), "doc") for o, kind, i in refs]

        def bodies(replies: list[Any]) -> dict[str, Any]:
            hits = []
            for (score, _, _), (owner, kind, item_id), raw in zip(page, refs, replies, strict=True):
                log_id, body = split_versioned(raw) if raw is not None else ("", None)
                if body is None:
                    continue  # deleted or expired between the round trips
                hits.append({"owner": owner, "type": kind, "id": item_id,
                             "score": score, "log_id": log_id, "item": body})  # fmt: skip
            return {"hits": hits, "cursor": nxt, "total": total, "as_of_ms": self.as_of_ms}

        return Query(commands, bodies)


def _order(hit: tuple[float, str, bytes]) -> tuple[float, str, bytes]:
    """Best first; ties by owner, then ``<kind>:<id>`` (its UTF-8 bytes sort as the
    text does)."""
    return -hit[0], hit[1], hit[2]


def _passes(meta: list[Any], f: Filters) -> bool:
    kind, _, ts, _, _, _, success, tags = meta
    if kind not in f.types or (f.since_ms is not None and ts < f.since_ms):
        return False
    if f.success is not None and success is not f.success:
        return False
    return all(t in tags for t in f.tags)
