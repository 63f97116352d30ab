"""Retrieval quality: recall@5 and MRR of keyword, semantic and hybrid search over a
labelled set built here from templates; embedding throughput; float16 recall cost.

    .venv/bin/python bench/retrieval.py [--entities 500] [--queries 500] [--json PATH]
        [--latency-n 100000] [--latency-only] [--modes keyword,semantic,hybrid]

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

All three modes are the real ``Reader.search(mode=...)`` over what a real in-process
worker folded (episodes, the BM25 index and the vector projection, which embeds each
batch in the worker's planning step and stores int8 vectors with a scale). Hybrid is the
reader's reciprocal rank fusion (k = 60) of the two top-100 lists. The same ranking over
the float32 and float16 vectors, computed here, gives the cost of the int8 storage.
Embedding throughput per worker: the worker's apply rate for the 5,000 episodes with the
vector projection against the same load with ``embedder=none`` (same server, same run),
and the embedder alone on one thread.

Latency: ``--latency-n`` (100,000) memories of one more owner are written straight
through the projections' apply path (Episodes, SearchIndex, Vectors; the vectors are
embedded in batches with ``Vectors.prepare_batch``, as the worker does) with ``ms_write``,
which is faster than a worker and writes the same keys; then p50/p99 of
``Reader.search`` per mode over the labelled queries, the reader's matrix cache warm
(its first, cold load is reported apart). Target: hybrid recall@5 at least keyword's +
10 points; p99 at most 50 ms per mode. Exit status 0 either way.

``--latency-only`` skips everything but the latency run, and ``--modes`` times only the
modes named; without semantic or hybrid the vectors are neither embedded nor written (a
keyword search never reads them), which takes the write from minutes to about 40 s.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from bench.common import (
    BenchRedis,
    Report,
    Target,
    environment,
    percentile,
    run_and_report,
)
from memstream.producers import AsyncProducer, Settings, keys
from memstream.producers.entry import StoredEvent
from memstream.producers.events import EpisodeSaved
from memstream.projections.base import ApplyContext
from memstream.projections.embedders import make_embedder
from memstream.projections.embedders.wordllama import WordLlamaEmbedder
from memstream.projections.episodes import Episodes
from memstream.projections.ops import Writes, write_command
from memstream.projections.reader import AsyncReader
from memstream.projections.search_index import SearchIndex
from memstream.projections.search_modes import SearchMode
from memstream.projections.vectors import Vectors
from memstream.workers.deploy import init
from memstream.workers.options import WorkerOptions
from memstream.workers.plan import Pointer
from memstream.workers.worker import Worker

OWNER = "agent.bench"
PER_ENTITY = 10
DEPTH = 50
MODES: tuple[SearchMode, ...] = ("keyword", "semantic", "hybrid")
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


def _fields(event: StoredEvent) -> dict[bytes, bytes]:
    """The log entry of an event, as the vector projection's batch step reads it."""
    return {b"type": event.type.encode(), b"v": str(event.version).encode(), b"ct": b"json",
            b"data": event.event.model_dump_json().encode()}  # fmt: skip


def write_direct(
    client: Any, owner: str, memories: list[tuple[str, str]], vectors: bool = True
) -> float:
    """Fold ``memories`` of ``owner`` through the projections' apply path and ``ms_write``
    (with the vector projection when ``vectors``); returns the seconds it took."""
    started = time.perf_counter()
    meta: Any = client.hgetall(keys.META)
    pk = keys.Projection(keys.partition(owner, int(meta[b"partitions"])), int(meta[b"version"]))
    now = int(time.time() * 1000)
    settings = Settings()
    ctx = ApplyContext(pk, settings, now)
    embed = Vectors()
    folds = [Episodes(), SearchIndex(), *([embed] if vectors else [])]
    for first in range(0, len(memories), 1000):
        events = []
        for i, (memory_id, text) in enumerate(memories[first : first + 1000], first):
            saved = EpisodeSaved(episode_id=memory_id, task=text, importance=0.5)
            events.append(StoredEvent(owner, f"{now - 60_000}-{i}", saved.TYPE, 1, saved))
        pointers = {e.log_id: Pointer(owner, e.log_id) for e in events}
        if vectors:
            embed.prepare_batch(settings, pointers, {e.log_id: _fields(e) for e in events})
        batches = []
        for event in events:
            writes = Writes()
            for fold in folds:
                fold.apply(event, ctx, writes)
            batches.append(writes.ops)
        client.execute_command(*write_command(batches))
    return time.perf_counter() - started


async def worker_load(url: str, memories: list[tuple[str, str]], embedder: str) -> float:
    """Append ``memories`` as episodes, then fold them with one in-process worker;
    returns its apply rate (events/s, from its start to the last one applied)."""
    async with AsyncProducer.from_url(url) as producer:
        receipts = []
        for first in range(0, len(memories), 500):
            events: list[Any] = [
                (OWNER, EpisodeSaved(episode_id=memory_id, task=text, importance=0.5))
                for memory_id, text in memories[first : first + 500]
            ]
            receipts += await producer.append_many(events)
    config = Settings.from_url(url, embedder=embedder)
    if embedder != "none":
        await asyncio.to_thread(make_embedder, config)  # the model loads before timing
    worker = Worker.from_settings(config, WorkerOptions(consumer="bench", block_ms=100))
    started = time.perf_counter()
    task = asyncio.create_task(worker.run())
    async with AsyncReader.from_settings(config) as reader:
        await reader.wait(receipts[-1], timeout=600)
    elapsed = time.perf_counter() - started
    worker.request_stop()
    await task
    await worker.client.aclose()
    return len(memories) / elapsed


async def ranks(url: str, labelled: list[tuple[str, str]], mode: SearchMode) -> list[list[str]]:
    async with AsyncReader.from_url(url) as reader:
        out = []
        for query, _ in labelled:
            found = await reader.search(OWNER, query, limit=DEPTH, mode=mode)
            out.append([hit["id"] for hit in found["hits"]])
        return out


async def latency(
    url: str, owner: str, queries: list[str], modes: Sequence[SearchMode] = MODES
) -> tuple[dict[str, tuple[float, float]], float]:
    """p50/p99 ms of ``Reader.search`` per mode (the matrix cache warm) and of one
    pipelined round trip (``HLEN ms:meta``: the baseline, same client, key
    ``"round trip"``), and the cold first semantic search (ms) that loads the owner's
    matrix (0 when no mode needs it)."""
    out: dict[str, tuple[float, float]] = {}
    async with AsyncReader.from_url(url) as reader:
        t = time.perf_counter()
        cold = 0.0
        if set(modes) - {"keyword"}:
            await reader.search(owner, queries[0], mode="semantic")
            cold = (time.perf_counter() - t) * 1e3
        else:  # the connection and the deployment, as the semantic search warms them
            await reader.search(owner, queries[0], mode="keyword")
        lat = []
        for _ in queries:
            t = time.perf_counter()
            pipe = reader.client.pipeline(transaction=False)
            pipe.hlen(keys.META)
            await pipe.execute()
            lat.append((time.perf_counter() - t) * 1e3)
        out["round trip"] = (percentile(lat, 50), percentile(lat, 99))
        for mode in modes:
            lat = []
            for query in queries:
                t = time.perf_counter()
                await reader.search(owner, query, limit=10, mode=mode)
                lat.append((time.perf_counter() - t) * 1e3)
            out[mode] = (percentile(lat, 50), percentile(lat, 99))
    return out, cold


def semantic_ranks(vectors: Any, ids: list[str], q: Any) -> list[list[str]]:
    scores = q @ vectors.T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :DEPTH]
    return [[ids[j] for j in row] for row in top]


def overlap(a: list[list[str]], b: list[list[str]]) -> float:
    """Mean share of b's top 10 that a's top 10 also holds (recall@10 against b)."""
    return float(np.mean([len(set(x[:10]) & set(y[:10])) / 10 for x, y in zip(a, b, strict=True)]))


def quality(ranks: list[list[str]], labelled: list[tuple[str, str]]) -> tuple[float, float]:
    hits5 = sum(want in got[:5] for got, (_, want) in zip(ranks, labelled, strict=True))
    rr = sum(1.0 / (got.index(want) + 1) if want in got else 0.0
             for got, (_, want) in zip(ranks, labelled, strict=True))  # fmt: skip
    return hits5 / len(labelled), rr / len(labelled)


def big_corpus(n: int) -> list[tuple[str, str]]:
    rng = random.Random(23)
    words = [w for template, _, _ in RELATIONS for w in template.split() if w != "{e}"]
    return [(f"b{i}", " ".join(rng.choices(words, k=10))) for i in range(n)]


def run(args: argparse.Namespace) -> tuple[Report, list[Target]]:
    rng = random.Random(17)
    memories, labelled = build(rng, args.entities, args.queries)
    rep = Report(f"retrieval over {len(memories):,} memories, {len(labelled)} labelled queries",
                 ("mode", "recall@5", "MRR"))  # fmt: skip
    targets: list[Target] = []
    with BenchRedis() as server:
        client = server.client()
        init(client, partitions=16)
        if not args.latency_only:
            targets += recall(server.url, client, memories, labelled, rep)
        if args.latency_n:
            targets += timed(server.url, client, args, [x for x, _ in labelled], rep)
        rep.data["env"] = environment(server.version)
    return rep, targets


def recall(
    url: str, client: Any, memories: list[tuple[str, str]], labelled: list[tuple[str, str]],
    rep: Report,
) -> list[Target]:  # fmt: skip
    """Recall@5 and MRR per mode, embedding throughput and the storage cost, into ``rep``."""
    ids = [memory_id for memory_id, _ in memories]
    embedder = WordLlamaEmbedder(batch=64)
    started = time.perf_counter()
    vectors32 = embedder.embed([text for _, text in memories])
    embed_s = time.perf_counter() - started
    q = embedder.embed([query for query, _ in labelled])
    vectors16 = vectors32.astype(np.float16).astype(np.float32)
    base_rate = asyncio.run(worker_load(url, memories, "none"))
    client.flushall()
    init(client, partitions=16)
    vec_rate = asyncio.run(worker_load(url, memories, "wordllama"))
    found = {mode: asyncio.run(ranks(url, labelled, mode)) for mode in MODES}
    semantic32 = semantic_ranks(vectors32, ids, q)
    semantic16 = semantic_ranks(vectors16, ids, q)
    results = {}
    modes = [*found.items(), ("semantic float32 (in process)", semantic32),
             ("semantic float16 (in process)", semantic16)]  # fmt: skip
    for name, ranking in modes:
        score, mrr = quality(ranking, labelled)
        results[name] = {"recall@5": score, "mrr": mrr}
        rep.row(name, f"{score:.3f}", f"{mrr:.3f}")
    agree8, agree16 = overlap(found["semantic"], semantic32), overlap(semantic16, semantic32)
    rate = len(memories) / embed_s
    rep.notes.append(
        f"embedder alone: {rate:,.0f} texts/s on one thread ({embedder.name}, "
        f"batch 64); one worker folds {vec_rate:,.0f} episodes/s with vectors, "
        f"{base_rate:,.0f}/s with embedder=none (ratio {vec_rate / base_rate:.2f})"
    )
    rep.notes.append(f"top-10 overlap with float32: stored int8+scale {agree8:.4f}, "
                     f"float16 {agree16:.4f}")  # fmt: skip
    rep.data.update({"results": results, "embed_per_s": rate, "worker_per_s": vec_rate,
                     "worker_none_per_s": base_rate, "i8_top10_overlap": agree8,
                     "f16_top10_overlap": agree16})  # fmt: skip
    gain = results["hybrid"]["recall@5"] - results["keyword"]["recall@5"]
    return [Target("hybrid - keyword recall@5 (points)", gain * 100, 10.0, at_least=True)]


def timed(
    url: str, client: Any, args: argparse.Namespace, queries: list[str], rep: Report
) -> list[Target]:
    """The latency run over ``args.latency_n`` memories of one more owner, into ``rep``."""
    modes: list[SearchMode] = args.modes
    vectors = bool(set(modes) - {"keyword"})
    write_s = write_direct(client, "agent.big", big_corpus(args.latency_n), vectors)
    lat, cold = asyncio.run(latency(url, "agent.big", queries, modes))
    targets = []
    for mode, (p50, p99) in lat.items():
        if mode not in MODES:
            rep.notes.append(f"one round trip (HLEN), same client: p50 {p50:.3f} ms, "
                             f"p99 {p99:.3f} ms")  # fmt: skip
            continue
        rep.notes.append(f"{mode} search over {args.latency_n:,} memories of one owner: "
                         f"p50 {p50:.2f} ms, p99 {p99:.2f} ms ({p50 / lat['round trip'][0]:.0f} "
                         "round trips at p50)")  # fmt: skip
        targets.append(Target(f"{mode} p99 ms at {args.latency_n:,}", p99, 50.0, at_least=False))
    rep.notes.append(
        f"first semantic search (loads the matrix): {cold:.0f} ms; "
        f"writing the {args.latency_n:,} directly ({'with' if vectors else 'without'} "
        f"vectors): {write_s:.1f} s"
    )
    per_mode = {m: {"p50": a, "p99": b} for m, (a, b) in lat.items()}
    rep.data["latency_ms"] = {"n": args.latency_n, "cold": cold, "write_s": write_s, **per_mode}
    return targets


def _modes(text: str) -> list[SearchMode]:
    chosen = [m.strip() for m in text.split(",") if m.strip()]
    for mode in chosen:
        if mode not in MODES:
            raise argparse.ArgumentTypeError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
    return cast(list[SearchMode], chosen)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entities", type=int, default=500, help="entities (10 memories each)")
    parser.add_argument("--queries", type=int, default=500, help="labelled queries")
    parser.add_argument("--latency-n", type=int, default=100_000,
                        help="vectors for the semantic latency run (0: skip)")  # fmt: skip
    parser.add_argument("--latency-only", action="store_true",
                        help="skip the recall part: only the latency run")  # fmt: skip
    parser.add_argument("--modes", type=_modes, default=list(MODES),
                        help="modes the latency run times, comma-separated")  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="write results here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return run_and_report(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
