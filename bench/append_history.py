"""``bench/append.py --history 10,1000,100000``: append and read cost against session length.

Each session is filled to its length with ``append_many`` (not timed) and applied by a
``memstream worker`` process; then ``Producer.append_message`` and
``Reader.history(last=20)`` and ``AsyncReader.history(last=20)`` (each call run to its end
on a private event loop) are timed in one loop, interleaved call by call across every
session. Both should be flat: an append writes one log entry and a read takes the newest
20 members of the session's sorted set, whatever the session's length.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.append import OWNER, message
from bench.common import BenchRedis, Report, Target, fmt_us, note, percentile
from bench.peers import timed
from bench.workers import Workers
from memstream.producers import Append, Producer
from memstream.projections.reader import AsyncReader, Reader
from memstream.workers.deploy import init

FLAT_TARGET = 1.1


def run_history(args: argparse.Namespace) -> tuple[Report, list[Target]]:
    lengths = [int(x) for x in args.history.split(",") if x]
    n = args.latency_n
    events = [message(i) for i in range(64)]
    res: dict[int, dict[str, float]] = {}
    with BenchRedis() as server, tempfile.TemporaryDirectory() as logdir:
        client = server.client()
        init(client, partitions=16)
        workers = Workers(server.url, 1, Path(logdir), "history")
        loop = asyncio.new_event_loop()
        areader = AsyncReader.from_url(server.url)
        try:
            with Producer.from_url(server.url) as producer, Reader.from_url(server.url) as reader:
                for length in lengths:
                    note(f"filling a session of {length:,} messages")
                    session = f"h-{length}"
                    items = [Append(OWNER, events[i % 64], session) for i in range(length)]
                    last: Any = None
                    for start in range(0, length, 1000):
                        last = producer.append_many(items[start : start + 1000])[-1]
                    workers.check()
                    reader.wait(last, timeout=900)

                # One timed loop over every length, call by call: drift in machine load
                # then lands on all lengths alike instead of on whichever ran last.
                calls: list[Callable[[int], object]] = []
                for length in lengths:
                    session = f"h-{length}"

                    def append(i: int, session: str = session) -> object:
                        e = events[i % 64]
                        return producer.append_message(
                            OWNER, session, e.role, e.content, meta=e.meta
                        )

                    def read(i: int, session: str = session) -> object:
                        return reader.history(OWNER, session, last=20)

                    def aread(i: int, session: str = session) -> object:
                        return loop.run_until_complete(areader.history(OWNER, session, last=20))

                    calls += [append, read, aread]
                samples = timed(calls, n)
                for k, length in enumerate(lengths):
                    a, r, ar = samples[3 * k], samples[3 * k + 1], samples[3 * k + 2]
                    res[length] = {
                        "append_p50": percentile(a, 50),
                        "append_p99": percentile(a, 99),
                        "history_p50": percentile(r, 50),
                        "history_p99": percentile(r, 99),
                        "async_history_p50": percentile(ar, 50),
                        "async_history_p99": percentile(ar, 99),
                    }
        finally:
            workers.stop()
            loop.run_until_complete(areader.aclose())
            loop.close()
        version = server.version
    rep = Report(
        f"append and history(last=20) against session length, redis-server {version}, "
        f"{n} calls each",
        (
            "session length",
            "append p50",
            "append p99",
            "history p50",
            "history p99",
            "async history p50",
            "async history p99",
        ),
    )
    for length, row in res.items():
        rep.row(
            f"{length:,}",
            fmt_us(row["append_p50"]),
            fmt_us(row["append_p99"]),
            fmt_us(row["history_p50"]),
            fmt_us(row["history_p99"]),
            fmt_us(row["async_history_p50"]),
            fmt_us(row["async_history_p99"]),
        )
    lo, hi = min(lengths), max(lengths)
    targets = [
        Target(
            f"{what} p50 at {hi:,} / at {lo:,}",
            res[hi][f"{what}_p50"] / res[lo][f"{what}_p50"],
            FLAT_TARGET,
            False,
        )
        for what in ("append", "history", "async_history")
    ]
    rep.data = {"results": {str(k): v for k, v in res.items()}, "n": n}
    return rep, targets
