"""Read benchmark: ``history(last=20)`` against the one raw ZRANGE it sends.

    .venv/bin/python bench/reads.py [--n N] [--length L] [--json PATH]

One private redis-server; a session of ``--length`` messages is appended and applied by
a ``memstream worker`` process (not timed). Then, interleaved call by call in an order
that rotates, on the same key and the same 20 members (checked):

* raw: redis-py's blocking ``ZRANGE key -20 -1`` (the baseline), and the asyncio one;
* ``Reader.history(owner, session, last=20)`` (blocking);
* ``AsyncReader.history(owner, session, last=20)``.

Targets: the p50 of each reader over the p50 of the raw blocking ZRANGE, at most 1.5;
and the async reader over the raw *asyncio* ZRANGE (the like-for-like baseline: the raw
asyncio ZRANGE alone is about 1.5x the blocking one), at most 1.5. The exit status is 0
whether or not the targets are met.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script (`python bench/reads.py`): make `bench` importable from the repo root.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis.asyncio

from bench.append import OWNER, message
from bench.common import BenchRedis, Report, Target, fmt_us, note, percentile
from bench.common import ratio as div
from bench.workers import Workers
from memstream.producers import Append, Producer, keys
from memstream.projections.history import history_key
from memstream.projections.reader import AsyncReader, Reader
from memstream.workers.deploy import init
from memstream.workers.replay import read_deployment

TARGET = 1.5
SESSION = "reads-bench"
NAMES = ("raw ZRANGE (sync)", "raw ZRANGE (async)", "Reader.history", "AsyncReader.history")


async def _timed(calls: Sequence[Callable[[], Awaitable[object]]], n: int) -> list[list[float]]:
    samples: list[list[float]] = [[] for _ in calls]
    clock = time.perf_counter_ns
    for i in range(n):
        for j in range(len(calls)):
            k = (i + j) % len(calls)  # rotate who goes first
            t0 = clock()
            await calls[k]()
            samples[k].append((clock() - t0) / 1e9)
    return samples


async def _measure(url: str, key: str, n: int, length: int, rd: Reader) -> list[list[float]]:
    raw = redis.Redis.from_url(url)
    araw = redis.asyncio.Redis.from_url(url)
    ard = AsyncReader.from_url(url)
    try:
        want = raw.zrange(key, -20, -1)
        got = rd.history(OWNER, SESSION, last=20)
        agot = await ard.history(OWNER, SESSION, last=20)
        tail = [message(i).content for i in range(length)][-20:]
        if len(want) != 20 or got != agot or [m["content"] for m in got] != tail:
            raise RuntimeError("the readers do not return the raw ZRANGE's 20 members")

        async def sync_raw() -> object:
            return raw.zrange(key, -20, -1)

        async def async_raw() -> object:
            return await araw.zrange(key, -20, -1)

        async def sync_reader() -> object:
            return rd.history(OWNER, SESSION, last=20)

        async def async_reader() -> object:
            return await ard.history(OWNER, SESSION, last=20)

        calls = [sync_raw, async_raw, sync_reader, async_reader]
        await _timed(calls, min(n, 500))  # warm-up: connections, caches
        return await _timed(calls, n)
    finally:
        raw.close()
        await araw.aclose()
        await ard.aclose()


def run(args: argparse.Namespace) -> tuple[Report, list[Target]]:
    with BenchRedis() as server, tempfile.TemporaryDirectory() as logdir:
        client = server.client()
        init(client, partitions=16)
        d = read_deployment(client)
        key = history_key(keys.Projection(keys.partition(OWNER, d.partitions), d.version),
                          OWNER, SESSION)  # fmt: skip
        workers = Workers(server.url, 1, Path(logdir), "reads")
        try:
            with Producer.from_url(server.url) as producer, Reader.from_url(server.url) as rd:
                note(f"filling a session of {args.length:,} messages")
                items = [Append(OWNER, message(i), SESSION) for i in range(args.length)]
                last = None
                for start in range(0, args.length, 1000):
                    last = producer.append_many(items[start : start + 1000])[-1]
                workers.check()
                assert last is not None
                rd.wait(last, timeout=300)
                note(f"timing {args.n:,} calls of each")
                samples = asyncio.run(_measure(server.url, key, args.n, args.length, rd))
        finally:
            workers.stop()
        version = server.version
    p50 = [percentile(s, 50) for s in samples]
    p99 = [percentile(s, 99) for s in samples]
    base = p50[0]
    rep = Report(
        f"history(last=20) against raw ZRANGE, redis-server {version}, {args.n:,} calls each",
        ("read", "p50", "p99", "p50 / raw sync ZRANGE", "p50 / raw async ZRANGE"),
    )
    for name, a, b in zip(NAMES, p50, p99, strict=True):
        rep.row(name, fmt_us(a), fmt_us(b), f"{div(a, base):.2f}x", f"{div(a, p50[1]):.2f}x")
    targets = [
        Target("Reader.history p50 / raw sync ZRANGE p50", div(p50[2], base), TARGET, False),
        Target("AsyncReader.history p50 / raw sync ZRANGE p50", div(p50[3], base), TARGET, False),
        Target(
            "AsyncReader.history p50 / raw asyncio ZRANGE p50", div(p50[3], p50[1]), TARGET, False
        ),
    ]
    rep.data = {
        "n": args.n,
        "length": args.length,
        "p50_s": dict(zip(NAMES, p50, strict=True)),
        "p99_s": dict(zip(NAMES, p99, strict=True)),
    }
    return rep, targets


def main(argv: list[str] | None = None) -> int:
    from bench.common import run_and_report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="timed calls of each read")
    parser.add_argument("--length", type=int, default=200, help="messages in the session")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    return run_and_report(run, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
