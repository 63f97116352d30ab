"""Retrieval quality: recall@5 and MRR of keyword, semantic and hybrid search over a
labelled set built here from templates; embedding throughput; float16 recall cost.

    .venv/bin/python bench/retrieval.py [--entities 500] [--queries 500] [--json PATH]

The set (reproducible: ``random.Random(17)``): ``E`` entities with made-up names (three
random syllables, so neither a dictionary nor a word-embedding knows them). Each entity
gets 10 memories, each from a different one of 12 relation templates ("the deploy of X
failed because the database ran out of disk space", ...), so 500 entities give 5,000
memories; the other 9 memories of an entity are its keyword distractors (same name,
another fact), and the same relation of the ~400 other entities that have it are its
semantic distractors (same fact, another name). A query picks an entity and one of its
memories and phrases that memory's fact with one of the relation's two paraphrase
templates, which avoid the memory's own words ("why did the X rollout break"), so the
name is the only shared term; the label is that memory's id. The set is built so that
keywords alone cannot tell an entity's facts apart: it measures what embeddings add
there, not the mix of queries a deployment will see.

Keyword is the real ``Reader.search`` (BM25 over the stemmed index, folded by the real
projections into a private redis-server, as bench/search.py loads). Semantic is exact
cosine top-k over the default embedder's vectors (WordLlama, 256 dimensions) held as
float16, as the vector projection is to store them, computed in this process (the vector
projection of issue 17 is not built yet, so this measures the ranking, not its latency).
Hybrid is reciprocal rank fusion of the two top-50 lists: score = sum of 1 / (60 + rank).
Target: hybrid recall@5 at least keyword's + 10 points. Exit status 0 either way.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from bench.common import (
    BenchRedis,
    Report,
    Target,
    environment,
    note,
    percentile,
    run_and_report,
)
from memstream.producers import Settings, keys
from memstream.producers.entry import StoredEvent
from memstream.producers.events import EpisodeSaved
from memstream.projections.base import ApplyContext
from memstream.projections.embedders.wordllama import WordLlamaEmbedder
from memstream.projections.episodes import Episodes
from memstream.projections.ops import Writes, write_command
from memstream.projections.reader import AsyncReader
from memstream.projections.search_index import SearchIndex
from memstream.workers.deploy import init

OWNER = "agent.bench"
RRF_K = 60
PER_ENTITY = 10
DEPTH = 50
SYLLABLES = ("ka", "lo", "mi", "ne", "pu", "ra", "so", "ti",
             "vu", "ze", "bo", "da", "fe", "gi", "hu", "jo")  # fmt: skip

# (memory template, two paraphrase query templates): the query shares only the name.
RELATIONS: list[tuple[str, str, str]] = [
    (
        "the deploy of {e} failed because the database ran out of disk space",
        "why did the {e} rollout break",
        "{e} release crashed storage full",
    ),
    (
        "{e} login page is slow for users in europe",
        "{e} sign in latency high across the continent",
        "sluggish authentication screen {e}",
    ),
    (
        "the {e} team prefers python for scripts",
        "which programming language does {e} like",
        "{e} favourite coding tool",
    ),
    (
        "{e} invoices are sent on the first monday of each month",
        "when does {e} bill customers",
        "{e} payment request schedule",
    ),
    (
        "{e} backups run nightly to cold storage",
        "how often is {e} data copied for recovery",
        "{e} archive snapshot frequency",
    ),
    (
        "the {e} cluster was upgraded to the new kernel last week",
        "recent operating system update on {e} servers",
        "{e} machines patched lately",
    ),
    (
        "customer complaints about {e} mention confusing menus",
        "what do buyers dislike in {e} navigation",
        "{e} user feedback interface unclear",
    ),
    (
        "{e} api keys rotate every ninety days",
        "how long do {e} credentials last",
        "{e} secret renewal period",
    ),
    (
        "the {e} office moved to a bigger building downtown",
        "where did {e} relocate",
        "{e} new headquarters city centre",
    ),
    (
        "{e} memory usage doubled after enabling caching",
        "why is {e} consuming more ram",
        "{e} footprint grew with the cache on",
    ),
    (
        "{e} uses a blue and orange colour scheme",
        "what are the brand colours of {e}",
        "{e} visual palette",
    ),
    (
        "{e} onboarding takes new hires two weeks",
        "how long is {e} employee orientation",
        "{e} induction duration for staff",
    ),
]


def build(
    rng: random.Random, entities: int, queries: int
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(id, text) memories and (query, relevant id) pairs."""
    names: set[str] = set()
    while len(names) < entities:
        names.add("".join(rng.choice(SYLLABLES) for _ in range(3)))
    memories: list[tuple[str, str]] = []
    facts: list[tuple[str, str, int]] = []
    for n, name in enumerate(sorted(names)):
        for r in rng.sample(range(len(RELATIONS)), PER_ENTITY):
            memory_id = f"m{n}-{r}"
            memories.append((memory_id, RELATIONS[r][0].format(e=name)))
            facts.append((memory_id, name, r))
    labelled = []
    for memory_id, name, r in rng.sample(facts, queries):
        labelled.append((RELATIONS[r][rng.choice((1, 2))].format(e=name), memory_id))
    return memories, labelled


def load(client: Any, memories: list[tuple[str, str]]) -> None:
    meta: Any = client.hgetall(keys.META)
    pk = keys.Projection(keys.partition(OWNER, int(meta[b"partitions"])), int(meta[b"version"]))
    now = int(time.time() * 1000)
    ctx = ApplyContext(pk, Settings(), now)
    folds = [Episodes(), SearchIndex()]
    for first in range(0, len(memories), 500):
        batches = []
        for i, (memory_id, text) in enumerate(memories[first : first + 500], first):
            # One timestamp for all: recency then cannot separate an entity's memories.
            saved = EpisodeSaved(episode_id=memory_id, task=text, importance=0.5)
            event = StoredEvent(OWNER, f"{now - 60_000}-{i}", saved.TYPE, 1, saved)
            writes = Writes()
            for fold in folds:
                fold.apply(event, ctx, writes)
            batches.append(writes.ops)
        client.execute_command(*write_command(batches))


async def keyword_ranks(url: str, labelled: list[tuple[str, str]]) -> list[list[str]]:
    async with AsyncReader.from_url(url) as reader:
        out = []
        for query, _ in labelled:
            found = await reader.search(OWNER, query, limit=DEPTH)
            out.append([hit["id"] for hit in found["hits"]])
        return out


def semantic_ranks(vectors: Any, ids: list[str], q: Any) -> list[list[str]]:
    scores = q @ vectors.T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :DEPTH]
    return [[ids[j] for j in row] for row in top]


def fuse(a: list[str], b: list[str]) -> list[str]:
    """Reciprocal rank fusion; ties broken by id so the order is deterministic."""
    score: dict[str, float] = {}
    for ranking in (a, b):
        for rank, item in enumerate(ranking, 1):
            score[item] = score.get(item, 0.0) + 1.0 / (RRF_K + rank)
    return sorted(score, key=lambda item: (-score[item], item))


def overlap(a: list[list[str]], b: list[list[str]]) -> float:
    """Mean share of b's top 10 that a's top 10 also holds (recall@10 against b)."""
    return float(np.mean([len(set(x[:10]) & set(y[:10])) / 10 for x, y in zip(a, b, strict=True)]))


def quality(ranks: list[list[str]], labelled: list[tuple[str, str]]) -> tuple[float, float]:
    hits5 = sum(want in got[:5] for got, (_, want) in zip(ranks, labelled, strict=True))
    rr = sum(1.0 / (got.index(want) + 1) if want in got else 0.0
             for got, (_, want) in zip(ranks, labelled, strict=True))  # fmt: skip
    return hits5 / len(labelled), rr / len(labelled)


def semantic_latency(embedder: WordLlamaEmbedder, n: int, queries: list[str]) -> list[float]:
    """Seconds per query of exact top-10 over ``n`` float16 vectors of one owner: embed the
    query, one matrix-vector product over the (float32-upcast) matrix, argpartition."""
    rng = random.Random(23)
    words = [w for template, _, _ in RELATIONS for w in template.split() if w != "{e}"]
    texts = [" ".join(rng.choices(words, k=10)) for _ in range(n)]
    matrix = embedder.embed(texts).astype(np.float16).astype(np.float32)
    out = []
    for query in queries:
        t = time.perf_counter()
        v = embedder.embed([query])[0]
        scores = matrix @ v
        top = np.argpartition(-scores, 10)[:10]
        top[np.argsort(-scores[top])]
        out.append(time.perf_counter() - t)
    return out


def run(args: argparse.Namespace) -> tuple[Report, list[Target]]:
    rng = random.Random(17)
    memories, labelled = build(rng, args.entities, args.queries)
    ids = [memory_id for memory_id, _ in memories]
    embedder = WordLlamaEmbedder(batch=64)
    started = time.perf_counter()
    vectors32 = embedder.embed([text for _, text in memories])
    embed_s = time.perf_counter() - started
    q = embedder.embed([query for query, _ in labelled])
    vectors16 = vectors32.astype(np.float16).astype(np.float32)
    # int8 with one scale per row (max |x| / 127): the other storage choice, for comparison.
    scale = np.abs(vectors32).max(axis=1, keepdims=True) / 127
    vectors8 = np.round(vectors32 / scale).astype(np.int8).astype(np.float32) * scale
    with BenchRedis() as server:
        client = server.client()
        init(client, partitions=16)
        load(client, memories)
        keyword = asyncio.run(keyword_ranks(server.url, labelled))
        env = environment(server.version)
    semantic = semantic_ranks(vectors16, ids, q)
    semantic32 = semantic_ranks(vectors32, ids, q)
    semantic8 = semantic_ranks(vectors8, ids, q)
    hybrid = [fuse(a, b) for a, b in zip(keyword, semantic, strict=True)]
    agree = overlap(semantic, semantic32)
    agree8 = overlap(semantic8, semantic32)
    rep = Report(f"retrieval over {len(memories):,} memories, {len(labelled)} labelled queries",
                 ("mode", "recall@5", "MRR"))  # fmt: skip
    results = {}
    modes = [("keyword", keyword), ("semantic", semantic), ("hybrid", hybrid),
             ("semantic float32", semantic32), ("semantic int8", semantic8)]  # fmt: skip
    for name, ranks in modes:
        recall, mrr = quality(ranks, labelled)
        results[name] = {"recall@5": recall, "mrr": mrr}
        rep.row(name, f"{recall:.3f}", f"{mrr:.3f}")
    rate = len(memories) / embed_s
    rep.notes.append(f"embedding: {rate:,.0f} texts/s on one thread ({embedder.name}, "
                     f"batch 64); top-10 overlap with float32: float16 {agree:.4f}, "
                     f"int8+scale {agree8:.4f}")  # fmt: skip
    note(f"embedded {len(memories):,} texts in {embed_s:.2f} s")
    rep.data = {"results": results, "embed_per_s": rate, "f16_top10_overlap": agree,
                "i8_top10_overlap": agree8,
                "env": env}  # fmt: skip
    if args.latency_n:
        lat = [
            x * 1e3 for x in semantic_latency(embedder, args.latency_n, [x for x, _ in labelled])
        ]
        p50, p99 = percentile(lat, 50), percentile(lat, 99)
        rep.notes.append(f"semantic exact top-10 over {args.latency_n:,} vectors in process: "
                         f"p50 {p50:.2f} ms, p99 {p99:.2f} ms")  # fmt: skip
        rep.data["semantic_ms"] = {"n": args.latency_n, "p50": p50, "p99": p99}
    gain = results["hybrid"]["recall@5"] - results["keyword"]["recall@5"]
    return rep, [Target("hybrid - keyword recall@5 (points)", gain * 100, 10.0, at_least=True)]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entities", type=int, default=500, help="entities (10 memories each)")
    parser.add_argument("--queries", type=int, default=500, help="labelled queries")
    parser.add_argument("--latency-n", type=int, default=100_000,
                        help="vectors for the semantic latency run (0: skip)")  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="write results here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return run_and_report(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
