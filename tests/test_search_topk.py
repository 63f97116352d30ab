"""Keyword search ranks only what can make the page (a rising score floor, bounds that
skip scoring): its pages, cursors, totals and hybrid's top list must equal a plain
"score every candidate, sort them all" ranking over the same Redis reads, including
posting lists cut at MAX_POSTINGS, stale postings of re-saved versions, deleted items,
heavy score ties across page boundaries, filters and a shared namespace."""

from __future__ import annotations

import math
import random
import time
from typing import Any

import msgpack
import redis

from memstream.producers import MemoryDeleted, Settings, keys
from memstream.producers.entry import StoredEvent
from memstream.producers.events import EpisodeSaved, KnowledgeLearned
from memstream.projections import search
from memstream.projections.base import ApplyContext
from memstream.projections.episodes import Episodes
from memstream.projections.items import KINDS
from memstream.projections.knowledge import Knowledge
from memstream.projections.ops import VERSION_LEN, Writes, write_command
from memstream.projections.reader import AsyncReader
from memstream.projections.search import Filters, Scope, SearchPlan, check_filters
from memstream.projections.search_index import (
    TF_SCALE,
    SearchIndex,
    live_key,
    meta_key,
    posting_key,
    stat_key,
)
from memstream.projections.tokenize import tokens

OWNER, TEAM = "agent.topk", "team.topk"
COMMON = ["alpha", "bravo"]  # in more than MAX_POSTINGS items: their lists are cut
WORDS = ["charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
TAGS = ["ops", "db"]


def _pk(r: redis.Redis, owner: str) -> keys.Projection:
    meta: Any = r.hgetall(keys.META)
    return keys.Projection(keys.partition(owner, int(meta[b"partitions"])), int(meta[b"version"]))


def _write(r: redis.Redis, owner: str, events: list[Any], ts0: int) -> None:
    """Fold ``events`` of ``owner`` through the item and search index apply paths
    (``ms_write``, as replay writes); equal times and importances make many exact score
    ties."""
    ctx = ApplyContext(_pk(r, owner), Settings(), int(time.time() * 1000))
    for first in range(0, len(events), 500):
        batches = []
        for i, e in enumerate(events[first : first + 500], first):
            writes = Writes()
            event = StoredEvent(owner, f"{ts0 + i // 300}-{i}", e.TYPE, 1, e)
            for fold in (Episodes(), Knowledge(), SearchIndex()):
                fold.apply(event, ctx, writes)
            batches.append(writes.ops)
        r.execute_command(*write_command(batches))  # type: ignore[no-untyped-call]


def _corpus(rng: random.Random, n: int, prefix: str) -> list[Any]:
    events: list[Any] = []
    for i in range(n):
        words = [w for w in COMMON if rng.random() < 0.6]
        words += rng.choices(WORDS, k=rng.randint(0, 3))
        tags = [t for t in TAGS if rng.random() < 0.3]
        importance = rng.choice([0.5, 0.5, 0.5, 0.9])
        if i % 7 == 0:
            events.append(KnowledgeLearned(knowledge_id=f"{prefix}{i}", description=" ".join(words),
                                           tags=tags, confidence=importance))  # fmt: skip
        else:
            events.append(EpisodeSaved(episode_id=f"{prefix}{i}", task=" ".join(words), tags=tags,
                                       success=rng.choice([True, False]),
                                       importance=importance))  # fmt: skip
    return events


def _reference(r: redis.Redis, scopes: list[Scope], words: list[str], f: Filters,
               now: int, as_of: int) -> list[tuple[float, str, str]]:  # fmt: skip
    """Every filtered hit, best first: the documented ranking computed the plain way."""
    live_min = (now + 1) * TF_SCALE
    n_docs = docs = length = 0
    df: dict[str, int] = {}
    rows = []
    for s in scopes:
        posted: dict[str, dict[bytes, int]] = {}
        cut: dict[str, int] = {}
        for w in words:
            key = posting_key(s.pk, s.owner, w)
            got: Any = r.zrange(key, "+inf", live_min, byscore=True, desc=True, offset=0,
                                num=search.MAX_POSTINGS, withscores=True)  # fmt: skip
            posted[w] = {m: int(sc) for m, sc in got}
            live = int(r.zcount(key, live_min, "+inf"))
            if live > len(got):
                cut[w] = live
        n_docs += int(r.zcount(live_key(s.pk, s.owner), f"({now}", "+inf"))
        stat: Any = r.hmget(stat_key(s.pk, s.owner), "docs", "len")
        docs, length = docs + int(stat[0] or 0), length + int(stat[1] or 0)
        refs = list(dict.fromkeys(m for p in posted.values() for m in p))
        metas: list[Any] = r.hmget(meta_key(s.pk, s.owner), refs) if refs else []
        for ref, raw in zip(refs, metas, strict=True):
            meta = msgpack.unpackb(raw[VERSION_LEN:]) if raw is not None else None
            if meta is None or meta[3] <= now:
                continue
            tfs = {w: p[ref] % TF_SCALE for w, p in posted.items()
                   if ref in p and p[ref] // TF_SCALE == meta[3]}  # fmt: skip
            for w in tfs:
                if w not in cut:
                    df[w] = df.get(w, 0) + 1
            rows.append((s.owner, ref.decode(), meta, tfs))
        for w, live in cut.items():
            df[w] = df.get(w, 0) + live
    avgdl = length / docs
    ranked = []
    for owner, name, meta, tfs in rows:
        kind, _, ts, _, dl, importance, success, tags = meta
        if kind not in f.types or (f.success is not None and success is not f.success):
            continue
        if not all(t in tags for t in f.tags):
            continue
        base = sum(
            search.bm25(tf, dl, avgdl, search.idf_of(n_docs, df[w])) for w, tf in tfs.items()
        )
        if base > 0:
            score = round(base * search.boost(importance, ts, as_of), search.DIGITS)
            ranked.append((score, owner, name))
    return sorted(ranked, key=lambda t: (-t[0], t[1], t[2]))


def _close(got: list[tuple[float, str, str]], want: list[tuple[float, str, str]]) -> None:
    """Same hits in the same order; scores equal to the 9 decimals they are rounded to
    (the sum of a hit's terms may be taken in another order here)."""
    assert [h[1:] for h in got] == [h[1:] for h in want]
    assert all(math.isclose(a[0], b[0], abs_tol=2e-9) for a, b in zip(got, want, strict=True))


async def test_pages_totals_and_top_lists_equal_a_full_sort(deployed: str, r: redis.Redis) -> None:
    rng = random.Random(3)
    ts0 = int(time.time() * 1000) - 3_600_000
    mine = _corpus(rng, 2600, "m")
    _write(r, OWNER, mine, ts0)
    _write(r, TEAM, _corpus(rng, 400, "t"), ts0)
    # Re-saves with other words leave stale postings; deletes leave postings without a
    # live version. Both sit among the newest postings of the cut lists.
    later: list[Any] = [EpisodeSaved(episode_id=f"m{i}", task="charlie golf", importance=0.5)
                        for i in range(1, 2600, 9) if i % 7]  # fmt: skip
    later += [MemoryDeleted(kind="episode", item_id=f"m{i}") for i in range(5, 2600, 11) if i % 7]
    _write(r, OWNER, later, ts0 + 60_000)
    scopes = [Scope(OWNER, _pk(r, OWNER)), Scope(TEAM, _pk(r, TEAM))]
    cut = r.zcount(posting_key(scopes[0].pk, OWNER, "alpha"), 0, "+inf")
    assert cut > search.MAX_POSTINGS  # the cut-list path is the one under test

    queries = ["alpha", "bravo", "alpha bravo", "charlie", "alpha golf", "bravo delta hotel",
               "echo foxtrot", "alpha bravo charlie delta", "nothing here"]  # fmt: skip
    filters: list[dict[str, Any]] = [
        {},
        {"types": ("episode",), "success": True},
        {"tags": ("ops",)},
    ]
    async with AsyncReader.from_url(deployed, shared=(TEAM,)) as reader:
        for query in queries:
            words = sorted(set(tokens(query)))
            for f in filters:
                fs = check_filters(f.get("types", KINDS), f.get("tags", ()), None,
                                   f.get("success"))  # fmt: skip
                first = await reader.search(OWNER, query, limit=7, mode="keyword", **f)
                now = as_of = first["as_of_ms"]
                want = _reference(r, scopes, words, fs, now, as_of)
                assert first["total"] == len(want), (query, f)
                pages = [(h["score"], h["owner"], f"{h['type']}:{h['id']}") for h in first["hits"]]
                cursor = first["cursor"]
                while cursor is not None and len(pages) < 120:  # ties cross these pages
                    page = await reader.search(OWNER, query, limit=7, mode="keyword",
                                               cursor=cursor, **f)  # fmt: skip
                    pages += [(h["score"], h["owner"], f"{h['type']}:{h['id']}")
                              for h in page["hits"]]  # fmt: skip
                    cursor = page["cursor"]
                _close(pages, want[: len(pages)])
                assert cursor is None or len(pages) >= 120
                if cursor is None:
                    assert len(pages) == len(want)

                plan = SearchPlan(scopes, words, fs, 1, now, keep_ranked=50)
                ranked = (await reader.run(plan.query()))["ranked"] if words else []
                _close(ranked, want[:50])
