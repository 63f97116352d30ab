"""Horizontal scale: end-to-end apply rate with 1, 2, 4 ... worker processes, on one node
and on a three-primary Redis Cluster.

    .venv/bin/python bench/scale.py [--workers 1,2,4] [--n N] [--owners K] [--json PATH]

For each topology (one private redis-server; three cluster-enabled redis-servers joined by
``redis-cli --cluster create``, no persistence on either) and each worker count: FLUSHALL,
``init``, fill ``N`` ``message.appended`` events with ``append_many``, time a raw no-op
consumer of the same feed entries (``XREADGROUP`` + ``XACK`` through a scratch group; on the
Cluster one ``XREADGROUP`` per feed, pipelined, since a command names one slot), then start
the worker processes and time from the first delivered entry until every feed is applied
(``bench/workers.py``'s method). Each figure is reported as a ratio to one worker on the
same topology in the same run, and to that topology's raw no-op loop.

Every process shares the machine's cores with the Redis servers: on a 2-core machine more
workers mostly compete for the same CPUs, so the ratios show contention, not the scaling
a bigger machine gives. The benchmark runs unchanged there (``--workers 1,2,4,8,16``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from bench.common import BenchRedis, environment, fmt_rate, median, note
from bench.workers import COUNT, SCRATCH, end_to_end, fill, raw_noop
from memstream.producers import keys
from memstream.producers.connection import is_cluster, sync_client
from memstream.producers.settings import Settings
from memstream.workers.deploy import init
from tests.redis_cluster import RedisClusterNodes


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    ap.add_argument("--n", type=int, default=10_000, help="events per end-to-end run")
    ap.add_argument("--owners", type=int, default=50, help="owners (one session each)")
    ap.add_argument("--rounds", type=int, default=3, help="raw no-op rounds per topology")
    ap.add_argument("--topologies", default="single,cluster", help="single, cluster or both")
    ap.add_argument("--json", type=Path, default=None, help="write every figure as JSON")
    return ap.parse_args(argv)


def raw_noop_per_feed(client: redis.Redis, partitions: int) -> float:
    """The raw no-op loop for a Cluster: one XREADGROUP per feed, pipelined, then XACK."""
    feeds = [keys.feed(p) for p in range(partitions)]
    for f in feeds:
        with suppress(redis.ResponseError):
            client.xgroup_destroy(f, SCRATCH)
        client.xgroup_create(f, SCRATCH, id="0")
    done = 0
    t0 = time.perf_counter()
    while True:
        pipe = client.pipeline(transaction=False)
        for f in feeds:
            pipe.xreadgroup(SCRATCH, "noop", {f: ">"}, count=COUNT)
        replies: Any = pipe.execute()
        ack = client.pipeline(transaction=False)
        for reply in replies:
            for stream, entries in reply or []:
                ack.xack(stream, SCRATCH, *[eid for eid, _ in entries])
                done += len(entries)
        if not len(ack):
            break
        ack.execute()
    rate = done / (time.perf_counter() - t0)
    for f in feeds:
        client.xgroup_destroy(f, SCRATCH)
    return rate


@contextmanager
def topology(name: str, workdir: Path) -> Iterator[str]:
    """A fresh server (or cluster) for one topology; yields its URL."""
    if name == "single":
        with BenchRedis() as server:
            yield server.url
        return
    cluster = RedisClusterNodes(workdir / "cluster", aof=False)
    try:
        yield cluster.url
    finally:
        cluster.stop()


def measure(name: str, counts: list[int], args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    with topology(name, tmp) as url:
        client = sync_client(Settings.from_url(url))
        rows: dict[str, Any] = {"url_scheme": url.split(":", 1)[0], "runs": {}}
        raws: list[float] = []
        for count in counts:
            client.flushall()
            partitions = init(client).partitions
            fill(url, args.n, args.owners)
            noop = raw_noop_per_feed if is_cluster(client) else raw_noop
            if not raws:
                raws = [noop(client, partitions) for _ in range(args.rounds)]
            figures, workers = end_to_end(client, url, partitions, args.n, count, tmp)
            workers.stop()
            rows["runs"][count] = figures
            note(f"{name}: {count} worker(s) {fmt_rate(figures['events_per_s'])}")
        rows["raw_noop_per_s"] = median(raws)
        base = rows["runs"][counts[0]]["events_per_s"]
        for count in counts:
            run = rows["runs"][count]
            run["ratio_to_first"] = run["events_per_s"] / base
            run["ratio_to_raw_noop"] = run["events_per_s"] / rows["raw_noop_per_s"]
        client.close()
        return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    counts = [int(c) for c in args.workers.split(",") if c]
    version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[2]
    result: dict[str, Any] = {"environment": environment(version), "n": args.n, "topologies": {}}
    with tempfile.TemporaryDirectory(prefix="ms-bench-scale-") as tmp:
        for name in [t for t in args.topologies.split(",") if t]:
            result["topologies"][name] = measure(name, counts, args, Path(tmp))
    print(f"{'topology':<9} {'workers':>7} {'events/s':>10} {'x first':>8} {'/ raw no-op':>11}")
    for name, rows in result["topologies"].items():
        for count, run in rows["runs"].items():
            print(
                f"{name:<9} {count:>7} {run['events_per_s']:>10,.0f} "
                f"{run['ratio_to_first']:>8.2f} {run['ratio_to_raw_noop']:>11.3f}"
            )
        print(f"{name:<9} {'raw':>7} {rows['raw_noop_per_s']:>10,.0f}")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
