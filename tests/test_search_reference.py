"""Search equals a small reference BM25 (recomputed here over the same tokens) for 200
random queries over 5,000 items, before and after deletes and re-saves; deleted items
never come back as hits."""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest

from memstream.producers import AsyncProducer, MemoryDeleted
from memstream.producers import events as ev
from memstream.projections import search
from memstream.projections.reader import AsyncReader
from memstream.projections.tokenize import tokens
from tests.workers_util import running_worker

OWNER = "agent.search"
K1, B, W_IMP, W_REC, HALF_LIFE_MS = 1.2, 0.75, 0.5, 0.5, 7 * 86_400_000
TAGS = ["ops", "db", "ui", "ml", "net", "sec", "qa", "docs"]
SYLLABLES = ["ka", "lo", "mi", "ne", "pu", "ra", "so", "ti", "vu", "ze", "bo", "da"]


def test_reference_parameters_are_the_documented_ones() -> None:
    assert (search.K1, search.B, search.W_IMPORTANCE, search.W_RECENCY) == (K1, B, W_IMP, W_REC)
    assert search.HALF_LIFE_MS == HALF_LIFE_MS


@dataclass
class Doc:
    kind: str
    item_id: str
    ts: int
    tf: Counter[str]
    importance: float
    success: bool | None
    tags: tuple[str, ...]

    @property
    def ref(self) -> str:
        return f"{self.kind}:{self.item_id}"


class Corpus:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.vocab = sorted({rng.choice(SYLLABLES) + rng.choice(SYLLABLES) + rng.choice(SYLLABLES)
                             for _ in range(4000)})  # fmt: skip
        self.weights = [1 / (r + 1) ** 0.6 for r in range(len(self.vocab))]
        self.live: dict[str, Doc] = {}
        self.versions_len = 0
        self.versions = 0

    def text(self, lo: int, hi: int) -> str:
        words = self.rng.choices(self.vocab, self.weights, k=self.rng.randint(lo, hi))
        if self.rng.random() < 0.3:
            words.append(self.rng.choice(["the", "and", "of"]))
        return " ".join(words)

    def event(self, kind: str, item_id: str) -> tuple[ev.Event, tuple[str, ...]]:
        tags = tuple(sorted(self.rng.sample(TAGS, self.rng.randint(0, 2))))
        if kind == "episode":
            ep = ev.EpisodeSaved(
                episode_id=item_id, task=self.text(2, 8), outcome=self.text(0, 6),
                success=self.rng.choice([True, False, None]), tags=list(tags),
                importance=round(self.rng.random(), 2))  # fmt: skip
            return ep, (ep.task, ep.outcome, " ".join(tags))
        if kind == "knowledge":
            kn = ev.KnowledgeLearned(
                knowledge_id=item_id,
                description=self.text(3, 10),
                tags=list(tags),
                confidence=round(self.rng.random(), 2),
            )
            return kn, (kn.description, " ".join(tags))
        sk = ev.SkillDefined(name=item_id, description=self.text(2, 8),
                             actions=[self.text(1, 3)], tags=list(tags))  # fmt: skip
        texts = (item_id.replace("-", " "), sk.description, " ".join(sk.actions), " ".join(tags))
        return sk, texts

    def saved(self, kind: str, item_id: str, e: ev.Event, texts: tuple[str, ...], ts: int) -> None:
        tf: Counter[str] = Counter()
        for t in texts:
            tf.update(tokens(t))
        self.versions += 1
        self.versions_len += sum(tf.values())
        importance = getattr(e, "importance", getattr(e, "confidence", 0.5))
        doc = Doc(kind, item_id, ts, tf, importance, getattr(e, "success", None),
                  tuple(getattr(e, "tags", ())))  # fmt: skip
        self.live[doc.ref] = doc

    def query(self) -> str:
        words = self.rng.choices(self.vocab, self.weights, k=self.rng.randint(1, 3))
        if self.rng.random() < 0.1:
            words.append("zzznotaword")
        return " ".join(words)

    def expected(self, query: str, now_ms: int, **filters: Any) -> list[tuple[str, float]]:
        words = sorted(set(tokens(query)))
        n = len(self.live)
        avgdl = self.versions_len / self.versions
        df = {w: sum(1 for d in self.live.values() if w in d.tf) for w in words}
        ranked = []
        for d in self.live.values():
            if not _passes(d, **filters):
                continue
            dl = sum(d.tf.values())
            base = 0.0
            for w in words:
                if d.tf[w]:
                    idf = math.log(1 + (n - df[w] + 0.5) / (df[w] + 0.5))
                    tf = min(d.tf[w], 63)
                    base += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * dl / avgdl))
            if base > 0:
                decay = 0.5 ** (max(0, now_ms - d.ts) / HALF_LIFE_MS)
                score = base * (1 + W_IMP * d.importance) * (1 + W_REC * decay)
                ranked.append((round(score, 9), d.ref))
        ranked.sort(key=lambda t: (-t[0], t[1]))
        return [(ref, score) for score, ref in ranked]


def _passes(d: Doc, types: tuple[str, ...] = (), tags: tuple[str, ...] = (),
            success: bool | None = None) -> bool:  # fmt: skip
    if types and d.kind not in types:
        return False
    if success is not None and d.success is not success:
        return False
    return all(t in d.tags for t in tags)


def _got(result: dict[str, Any]) -> list[tuple[str, float]]:
    return [(f"{h['type']}:{h['id']}", h["score"]) for h in result["hits"]]


async def _check(reader: AsyncReader, corpus: Corpus, query: str, limit: int, **f: Any) -> None:
    result = await reader.search(OWNER, query, limit=limit, mode="keyword", **f)
    want = corpus.expected(query, result["as_of_ms"], **f)
    assert result["total"] == len(want), query
    got = _got(result)
    assert [r for r, _ in got] == [r for r, _ in want[:limit]], query
    assert [s for _, s in got] == pytest.approx([s for _, s in want[:limit]], abs=1e-9), query


async def test_search_matches_reference_bm25(deployed: str) -> None:
    rng = random.Random(20240611)
    corpus = Corpus(rng)
    plan = ["episode"] * 3500 + ["knowledge"] * 1000 + ["skill"] * 500
    batch, texts = [], []
    for i, kind in enumerate(plan):
        e, t = corpus.event(kind, f"{kind[:2]}-{i}")
        batch.append((OWNER, e))
        texts.append((kind, f"{kind[:2]}-{i}", e, t))
    async with (
        running_worker(deployed), AsyncProducer.from_url(deployed) as producer,
        AsyncReader.from_url(deployed) as reader,
    ):  # fmt: skip
        receipts = await producer.append_many(batch)
        for (kind, item_id, e, t), receipt in zip(texts, receipts, strict=True):
            corpus.saved(kind, item_id, e, t, int(receipt.log_id.split("-")[0]))
        await reader.wait(receipts[-1], timeout=120)
        df: Counter[str] = Counter()
        for d in corpus.live.values():
            df.update(d.tf.keys())
        # No posting list is cut at MAX_POSTINGS here, so every document frequency is exact.
        assert 300 < max(df.values()) < search.MAX_POSTINGS
        assert await reader.episode_count(OWNER) == 3500
        for i in range(200):
            f: dict[str, Any] = {}
            if i % 5 == 0:
                f = {"types": ("episode",), "success": True}
            elif i % 7 == 0:
                f = {"tags": ("ops",)}
            await _check(reader, corpus, corpus.query(), rng.choice([1, 10, 50]), **f)

        # Deletes and re-saves: the index must follow, and deleted items never come back.
        deleted = rng.sample(texts, 60)
        gone = {f"{kind}:{item_id}" for kind, item_id, _, _ in deleted}
        changes: list[Any] = [(OWNER, MemoryDeleted(kind=k, item_id=i)) for k, i, _, _ in deleted]
        resaved = [x for x in rng.sample(texts, 40) if f"{x[0]}:{x[1]}" not in gone]
        fresh = [corpus.event(kind, item_id) for kind, item_id, _, _ in resaved]
        changes += [(OWNER, e) for e, _ in fresh]
        receipts = await producer.append_many(changes)
        for kind, item_id, _, _ in deleted:
            del corpus.live[f"{kind}:{item_id}"]
        for (kind, item_id, _, _), (e, t), receipt in zip(
            resaved, fresh, receipts[len(deleted) :], strict=True
        ):
            corpus.saved(kind, item_id, e, t, int(receipt.log_id.split("-")[0]))
        await reader.wait(receipts[-1], timeout=60)
        for _ in range(40):
            await _check(reader, corpus, corpus.query(), 20)
        for kind, item_id, _, t in deleted:  # query each deleted item by its own words
            result = await reader.search(OWNER, " ".join(t)[:200], limit=1000, mode="keyword")
            assert f"{kind}:{item_id}" not in {r for r, _ in _got(result)}
            assert await reader.episode(OWNER, item_id) is None
        assert await reader.episode_count(OWNER) == sum(
            1 for d in corpus.live.values() if d.kind == "episode"
        )

        # Pages with a cursor concatenate to the full ranking.
        query = " ".join(corpus.vocab[:3])
        want = corpus.expected(query, 0)
        pages: list[tuple[str, float]] = []
        cursor = None
        while True:
            result = await reader.search(OWNER, query, limit=7, cursor=cursor, mode="keyword")
            pages += _got(result)
            cursor = result["cursor"]
            if cursor is None:
                break
        assert [r for r, _ in pages] == [r for r, _ in corpus.expected(query, result["as_of_ms"])]
        assert len(pages) == len(want) > 7
