"""Blocking reads that used to hop to a private event loop, now run on the reader's own
blocking client: p50 of ``skill_stats``, ``episodes(limit=20)`` and ``context``.

    .venv/bin/python bench/reader_core.py [--n N]

One private redis-server and one ``memstream worker`` process (not timed) that applies
20 saved episodes. Compare two checkouts by running this script in each, one after the
other, on the same machine (docs/benchmarks.md). The exit status is always 0.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import BenchRedis
from bench.workers import Workers
from memstream.producers import EpisodeSaved, Producer
from memstream.projections.reader import Reader
from memstream.workers.deploy import init

OWNER = "bench.owner"


def p50_us(call: Callable[[], object], n: int) -> float:
    for _ in range(min(200, n)):
        call()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="timed calls of each read")
    args = parser.parse_args(argv)
    with BenchRedis() as server, tempfile.TemporaryDirectory() as logdir:
        init(server.client(), partitions=16)
        workers = Workers(server.url, 1, Path(logdir), "reader-core")
        try:
            with Producer.from_url(server.url) as producer, Reader.from_url(server.url) as rd:
                last = None
                for i in range(20):
                    event = EpisodeSaved(episode_id=f"e{i}", task=f"deploy service {i}")
                    last = producer.append(OWNER, event)
                assert last is not None
                rd.wait(last, timeout=60)
                reads: dict[str, Callable[[], object]] = {
                    "skill_stats": lambda: rd.skill_stats(OWNER, "x"),
                    "episodes(limit=20)": lambda: rd.episodes(OWNER, limit=20),
                    "context": lambda: rd.context(OWNER, "deploy"),
                }
                for name, call in reads.items():
                    print(f"{name}: p50 {p50_us(call, args.n):.1f} us")
        finally:
            workers.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
