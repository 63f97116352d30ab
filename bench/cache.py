"""Read-cache benchmark: hit ratio and read latency, cached against uncached.

    .venv/bin/python bench/cache.py [--reads N] [--write-every K] [--json PATH]

One private redis-server (no persistence) and one in-process worker. Ten owners each get
50 messages in one session and a state document. Then two readers run the same read mix
(``history(last=20)`` and ``state``, owners round-robin), ``N`` reads each, one read at a
time:

- **uncached**: ``AsyncReader`` without a cache (every read is a pipelined round trip);
- **cached**: ``AsyncReader(cache=True)``; every ``K``-th read is preceded by a
  ``save_state`` of that owner from a producer, so notifications invalidate the owner's
  entries while reads go on (the worker applies it; the reader does not wait for it).

Reported: p50 / p99 latency of each, their ratio, and the cache's hit ratio and counts.
Both readers share the server and the machine in the same run, so the ratio is the
figure to compare. Exit status 0 whatever the outcome.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import BenchRedis, Report, Target, environment, note, percentile, ratio
from memstream.producers import AsyncProducer
from memstream.projections.reader import AsyncReader
from memstream.workers.deploy import init
from memstream.workers.options import WorkerOptions
from memstream.workers.worker import Worker

OWNERS = [f"agent{i}" for i in range(10)]


async def fill(url: str) -> None:
    async with AsyncProducer.from_url(url) as producer, AsyncReader.from_url(url) as reader:
        last = None
        for owner in OWNERS:
            for i in range(50):
                last = await producer.append_message(owner, "s1", "user", f"message {i}")
            last = await producer.save_state(owner, {"owner": owner, "n": 0})
        assert last is not None
        await reader.wait(last, timeout=120)


async def read_mix(
    reader: AsyncReader, n: int, producer: AsyncProducer | None, write_every: int
) -> list[float]:
    latencies = []
    for i in range(n):
        owner = OWNERS[i % len(OWNERS)]
        if producer is not None and write_every and i % write_every == write_every - 1:
            await producer.save_state(owner, {"owner": owner, "n": i})
        started = time.perf_counter()
        if i % 2:
            await reader.state(owner)
        else:
            await reader.history(owner, "s1", last=20)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


async def run(
    url: str, n: int, write_every: int
) -> tuple[list[float], list[float], dict[str, float]]:
    worker = Worker.from_settings(
        AsyncReader.from_url(url).settings, WorkerOptions(consumer="bench", block_ms=100)
    )
    task = asyncio.create_task(worker.run())
    try:
        await fill(url)
        async with AsyncReader.from_url(url) as plain:
            await read_mix(plain, 200, None, 0)  # warm connections
            uncached = await read_mix(plain, n, None, 0)
        async with (
            AsyncReader.from_url(url, cache=True) as cached_reader,
            AsyncProducer.from_url(url) as producer,
        ):
            await read_mix(cached_reader, 200, None, 0)
            assert cached_reader.read_cache is not None
            cached_reader.read_cache.stats.hits = cached_reader.read_cache.stats.misses = 0
            cached = await read_mix(cached_reader, n, producer, write_every)
            stats = cached_reader.cache_stats()
    finally:
        worker.request_stop()
        await task
        await worker.client.aclose()
    return uncached, cached, stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reads", type=int, default=20_000)
    parser.add_argument("--write-every", type=int, default=100)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with BenchRedis() as server:
        client = server.client()
        init(client, partitions=16)
        version = str(client.info("server")["redis_version"])
        note(f"{args.reads} reads each; a write every {args.write_every} cached reads")
        uncached, cached, stats = asyncio.run(run(server.url, args.reads, args.write_every))
    report = Report("read cache", ["reader", "p50 ms", "p99 ms", "hit ratio"])
    report.row("uncached", f"{percentile(uncached, 50):.3f}", f"{percentile(uncached, 99):.3f}",
               "-")  # fmt: skip
    report.row("cached", f"{percentile(cached, 50):.3f}", f"{percentile(cached, 99):.3f}",
               f"{stats['hit_ratio']:.3f}")  # fmt: skip
    speedup = ratio(percentile(uncached, 50), percentile(cached, 50))
    report.notes.append(
        f"p50 speed-up cached/uncached: {speedup:.1f}x; cache: {int(stats['hits'])} hits, "
        f"{int(stats['misses'])} misses, {int(stats['invalidations'])} invalidations"
    )
    report.data = {
        "environment": environment(version), "reads": args.reads,
        "write_every": args.write_every, "cache": stats,
        "uncached_ms": {"p50": percentile(uncached, 50), "p99": percentile(uncached, 99)},
        "cached_ms": {"p50": percentile(cached, 50), "p99": percentile(cached, 99)},
    }  # fmt: skip
    targets = [Target("p50 speed-up (uncached / cached)", speedup, 2.0, at_least=True)]
    report.print(targets)
    if args.json:
        report.write_json(args.json, targets)


if __name__ == "__main__":
    main()
