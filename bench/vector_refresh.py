"""Semantic search under writes: a reader patching its cached matrix from the change
stream (``vec_c``) against the same reader loading the whole hash on every change.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/vector_refresh.py [--n 100000]
        [--searches 300] [--every 5] [--full-searches 60] [--json PATH]

One private redis-server. ``--n`` episodes of one owner are written straight through the
apply path (Episodes and Vectors, ``ms_write`` in batches of 1,000); their vectors are
random unit vectors (latency does not depend on what they mean) made by an embedder that
names itself as the reader's (WordLlama, 256 dimensions), so the reader embeds its
queries for real and searches them. Then ``Reader.search(mode="semantic", limit=10)``
over the 100 bench queries, timed one by one, in three phases of one reader each:

- quiet: no writes (the scoring floor);
- incremental: a write (one episode, new or rewritten, through the same apply path)
  before every ``--every``-th search; the reader patches its matrix;
- full: the same, with the patch refused, so every change loads the hash whole (the
  behaviour before the change stream), ``--full-searches`` of them (each load is seconds).

The first search of each phase (its whole load) is reported apart. The writes are not
timed there; what the change record costs a write is measured apart: the server's time
in ``FCALL`` (``INFO commandstats``) per vector write, ``ms_write`` calls of 1,000
rewrites with and without the ``VCHG`` ops, alternating (``--write-rounds``). Last,
in process, the scoring kernel: one query against ``--n`` rows as float32 (BLAS, what
readers do), float16 and int8. Target:
incremental p99 at most 50 ms. Exit status 0 either way.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Callable, Sequence
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
    ratio,
)
from bench.retrieval import build
from memstream.producers import keys
from memstream.producers.entry import StoredEvent
from memstream.producers.events import EpisodeSaved
from memstream.producers.settings import Settings
from memstream.projections import vector_index
from memstream.projections.base import ApplyContext
from memstream.projections.embedders import Embedder
from memstream.projections.embedders.wordllama import DIMENSION, WordLlamaEmbedder
from memstream.projections.episodes import Episodes
from memstream.projections.ops import Writes, write_command
from memstream.projections.reader import AsyncReader
from memstream.projections.vectors import Vectors
from memstream.workers.deploy import init
from memstream.workers.plan import Pointer

OWNER = "agent.big"


def _fields(event: StoredEvent) -> dict[bytes, bytes]:
    """The log entry of an event, as the vector projection's batch step reads it."""
    return {b"type": event.type.encode(), b"v": str(event.version).encode(), b"ct": b"json",
            b"data": event.event.model_dump_json().encode()}  # fmt: skip


class RandomVectors(Embedder):
    """Seeded random unit vectors under the reader's embedder's name (same space)."""

    name = WordLlamaEmbedder.name
    dimension = DIMENSION

    def __init__(self) -> None:
        super().__init__(batch=100_000)
        self.rng = np.random.default_rng(17)

    def _embed_batch(self, texts: list[str]) -> Any:
        return self.rng.normal(size=(len(texts), self.dimension)).astype(np.float32)


class Folder:
    """Writes episodes of OWNER through the apply path with ``ms_write``."""

    def __init__(self, client: Any) -> None:
        meta: Any = client.hgetall(keys.META)
        self.client = client
        self.pk = keys.Projection(keys.partition(OWNER, int(meta[b"partitions"])),
                                  int(meta[b"version"]))  # fmt: skip
        self.settings = Settings()
        self.vectors = Vectors(RandomVectors())
        self.folds = [Episodes(), self.vectors]
        self.seq = 0
        self.t0 = int(time.time() * 1000) - 60_000

    def write(self, items: Sequence[tuple[str, str]], *, drop: str = "") -> None:
        """Fold ``items`` (id, text) as episodes; ``drop`` leaves out the ops of that name."""
        events = []
        for item_id, text in items:
            self.seq += 1
            saved = EpisodeSaved(episode_id=item_id, task=text, importance=0.5)
            events.append(StoredEvent(OWNER, f"{self.t0}-{self.seq}", saved.TYPE, 1, saved))
        pointers = {e.log_id: Pointer(OWNER, e.log_id) for e in events}
        self.vectors.prepare_batch(self.settings, pointers, {e.log_id: _fields(e) for e in events})
        ctx = ApplyContext(self.pk, self.settings, int(time.time() * 1000))
        batches = []
        for event in events:
            writes = Writes()
            for fold in self.folds:
                fold.apply(event, ctx, writes)
            batches.append([op for op in writes.ops if op[0] != drop])
        self.client.execute_command(*write_command(batches))


def fcall_usec(client: Any) -> float:
    """The server's total time in FCALL so far (µs, ``INFO commandstats``)."""
    stats: Any = client.info("commandstats")
    return float(stats.get("cmdstat_fcall", {}).get("usec", 0))


def write_cost(folder: Folder, rounds: int) -> tuple[float, float]:
    """Least server µs per vector write over ``rounds``, with and without the change
    record (``VCHG``): rounds of 1,000 rewrites of existing episodes, alternating the two
    (the least: on a shared machine the other rounds mostly measure the neighbours)."""
    per: dict[str, list[float]] = {"with": [], "without": []}
    for n in range(rounds):
        for name, drop in (("with", ""), ("without", "VCHG")):
            before = fcall_usec(folder.client)
            folder.write([(f"m{i}", f"rewrite {n} {i}") for i in range(1000)], drop=drop)
            per[name].append((fcall_usec(folder.client) - before) / 1000)
    return min(per["with"]), min(per["without"])


async def phase(
    url: str, folder: Folder, queries: list[str], searches: int, every: int
) -> tuple[list[float], float, tuple[int, int]]:
    """Search latencies (ms, the first whole load apart), that load, and the reader's
    (loads, patches) at the end."""
    async with AsyncReader.from_url(url) as reader:
        t = time.perf_counter()
        await reader.search(OWNER, queries[0], mode="semantic", limit=10)
        cold = (time.perf_counter() - t) * 1e3
        lat = []
        for i in range(searches):
            if every and i % every == 0:
                n = folder.seq
                folder.write([(f"w{n}" if n % 2 else f"m{n % 1000}", f"written during {n}")])
            t = time.perf_counter()
            await reader.search(OWNER, queries[i % len(queries)], mode="semantic", limit=10)
            lat.append((time.perf_counter() - t) * 1e3)
        cache = reader.__dict__["_vector_state"].cache
        return lat, cold, (cache.loads, cache.patches)


def kernels(n: int, rounds: int = 8) -> dict[str, float]:
    """Best-of-``rounds`` ms of one query's scores over ``n`` unit rows of 256 dimensions:
    float32 through BLAS (what the reader does), float16 and int8 (int32 accumulation)
    through numpy, and float16 converted to float32 in cache-sized chunks."""
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(n, DIMENSION)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    q = rows[0].copy()
    r16, q16 = rows.astype(np.float16), q.astype(np.float16)
    r8 = np.rint(rows * 127 / np.abs(rows).max(axis=1, keepdims=True)).astype(np.int8)
    q8 = np.rint(q * 127 / np.abs(q).max()).astype(np.int32)
    chunk = np.empty((4096, DIMENSION), np.float32)

    def chunked() -> Any:
        out = np.empty(n, np.float32)
        for i in range(0, n, 4096):
            part = chunk[: len(r16[i : i + 4096])]
            part[...] = r16[i : i + 4096]
            np.dot(part, q, out=out[i : i + len(part)])
        return out

    runs: dict[str, Callable[[], Any]] = {
        "float32 (BLAS)": lambda: rows @ q,
        "float16": lambda: r16 @ q16,
        "float16 -> float32 chunks": chunked,
        "int8 (int32 sums)": lambda: r8.astype(np.int32) @ q8,
    }
    best: dict[str, float] = {}
    for name, fn in runs.items():
        fn()
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1e3)
        best[name] = min(times)
    return best


def _refuse(*_: Any) -> None:
    return None


def run(args: argparse.Namespace) -> tuple[Report, list[Target]]:
    _, labelled = build(random.Random(17), 100, 100)
    queries = [query for query, _ in labelled]
    rep = Report(f"semantic search over {args.n:,} vectors of one owner, a write every "
                 f"{args.every} searches", ("phase", "searches", "p50 ms", "p99 ms", "max ms",
                                            "first ms", "loads/patches"))  # fmt: skip
    results: dict[str, Any] = {}
    with BenchRedis() as server:
        client = server.client()
        init(client, partitions=16)
        folder = Folder(client)
        started = time.perf_counter()
        for first in range(0, args.n, 1000):
            last = min(first + 1000, args.n)
            folder.write([(f"m{i}", f"memory {i}") for i in range(first, last)])
        note(f"wrote {args.n:,} episodes in {time.perf_counter() - started:.1f} s")
        changed: Callable[..., Any] = vector_index._changed
        plan = [("quiet", args.searches, 0), ("incremental", args.searches, args.every),
                ("full", args.full_searches, args.every)]  # fmt: skip
        for name, searches, every in plan:
            vector_index._changed = _refuse if name == "full" else changed  # type: ignore[assignment]
            try:
                lat, cold, counts = asyncio.run(phase(server.url, folder, queries, searches, every))
            finally:
                vector_index._changed = changed
            p50, p99 = percentile(lat, 50), percentile(lat, 99)
            results[name] = {"p50": p50, "p99": p99, "max": max(lat), "first": cold,
                             "loads": counts[0], "patches": counts[1]}  # fmt: skip
            rep.row(name, str(searches), f"{p50:.2f}", f"{p99:.2f}", f"{max(lat):.1f}",
                    f"{cold:.0f}", f"{counts[0]}/{counts[1]}")  # fmt: skip
            note(f"{name}: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
        cost = write_cost(folder, args.write_rounds)
        env = environment(server.version)
    inc, full = results["incremental"], results["full"]
    scored = kernels(args.n)
    rep.notes.append("scores of one query over the rows, best of 8: " + ", ".join(
        f"{name} {ms:.1f} ms" for name, ms in scored.items()))  # fmt: skip
    results["kernels_ms"] = scored
    rep.notes.append(f"server time per vector write (ms_write, 1,000 a call, least of "
                     f"{args.write_rounds}): {cost[0]:.1f} µs with the change record, "
                     f"{cost[1]:.1f} µs without (ratio {ratio(cost[0], cost[1]):.2f})")  # fmt: skip
    results["write_us"] = {"with": cost[0], "without": cost[1]}
    rep.notes.append(f"full/incremental: p50 {ratio(full['p50'], inc['p50']):.1f}x, "
                     f"p99 {ratio(full['p99'], inc['p99']):.1f}x")  # fmt: skip
    rep.data = {"n": args.n, "every": args.every, "results": results, "env": env}
    return rep, [Target(f"incremental p99 ms at {args.n:,}", inc["p99"], 50.0, at_least=False)]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="vectors of the one owner")
    parser.add_argument("--searches", type=int, default=300, help="searches per phase")
    parser.add_argument("--every", type=int, default=5, help="a write before every k-th search")
    parser.add_argument("--full-searches", type=int, default=60,
                        help="searches of the full-reload phase")  # fmt: skip
    parser.add_argument("--write-rounds", type=int, default=15,
                        help="rounds of 1,000 writes with and without VCHG")  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from bench.common import run_and_report

    return run_and_report(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
