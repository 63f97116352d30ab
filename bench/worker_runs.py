"""The measuring half of ``bench/workers.py``: the feed fill, the raw no-op baseline, the
``memstream worker`` processes and the timing of one end-to-end run, with the CPU the
workers and redis-server used while timed.

Other benchmarks (``bench/scale.py``, ``bench/world.py``, ``bench/tensors.py``,
``bench/reads.py``, ``bench/peers.py``) reuse these pieces through ``bench.workers``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

from bench.append import message
from bench.common import progress
from bench.freshness import owner
from memstream.producers import Append, Producer, keys
from memstream.projections.ops import id_tuple
from memstream.workers.deploy import init
from memstream.workers.procs import stop_all

GROUP = keys.group(1)
SCRATCH = "bench-noop"
COUNT = 200
"""Entries per XREADGROUP and stream: the worker's default ``--batch``."""
APPLY_TIMEOUT_S = 60.0


def fill(url: str, n: int, owners: int) -> float:
    """Append ``n`` events with ``append_many``; returns the append rate."""
    items = [Append(*owner(i, owners)[:1], message(i), owner(i, owners)[1]) for i in range(n)]
    with Producer.from_url(url) as producer:
        t0 = time.perf_counter()
        for start in range(0, n, 1000):
            producer.append_many(items[start : start + 1000])
        return n / (time.perf_counter() - t0)


def reset(client: redis.Redis) -> None:
    client.flushall()
    init(client)


# --- baseline: raw XREADGROUP + XACK ---------------------------------------------------


def raw_noop(client: redis.Redis, partitions: int) -> float:
    """Read every feed entry through a scratch group and ack it; returns entries/s."""
    feeds = [keys.feed(p) for p in range(partitions)]
    pipe = client.pipeline(transaction=False)
    for f in feeds:
        pipe.xgroup_destroy(f, SCRATCH)
    pipe.execute(raise_on_error=False)
    pipe = client.pipeline(transaction=False)
    for f in feeds:
        pipe.xgroup_create(f, SCRATCH, id="0")
    pipe.execute()
    streams = dict.fromkeys(feeds, ">")
    done = 0
    t0 = time.perf_counter()
    while True:
        reply: Any = client.xreadgroup(SCRATCH, "noop", streams, count=COUNT)  # type: ignore[arg-type]
        if not reply:
            break
        ack = client.pipeline(transaction=False)
        for stream, entries in reply:
            ack.xack(stream, SCRATCH, *[eid for eid, _ in entries])
            done += len(entries)
        ack.execute()
    rate = done / (time.perf_counter() - t0)
    pipe = client.pipeline(transaction=False)
    for f in feeds:
        pipe.xgroup_destroy(f, SCRATCH)
    pipe.execute()
    return rate


# --- workers -------------------------------------------------------------------------


class Workers:
    """``memstream worker`` processes, logging to a temporary file; SIGTERM on stop."""

    def __init__(self, url: str, count: int, logdir: Path, tag: str) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        for k in range(count):
            log = logdir / f"worker-{tag}-{k}.log"
            self.logs.append(log)
            argv = [
                sys.executable, "-m", "memstream.workers.cli", "worker",
                "--redis-url", url, "--consumer", f"bench-{tag}-{k}",
                "--block-ms", "1000", "--batch", str(COUNT),
            ]  # fmt: skip
            with log.open("wb") as fh:
                self.procs.append(subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT))

    def check(self) -> None:
        for proc, log in zip(self.procs, self.logs, strict=True):
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"worker exited with {proc.returncode}:\n{tail}")

    def stop(self) -> None:
        stop_all(self.procs, timeout=10)


def feed_progress(client: redis.Redis, partitions: int) -> tuple[int, bool]:
    """(feeds the group has started on, whether every feed is fully applied)."""
    pipe = client.pipeline(transaction=False)
    for p in range(partitions):
        pipe.xinfo_stream(keys.feed(p))
        pipe.xinfo_groups(keys.feed(p))
    replies: Any = pipe.execute()
    started = 0
    done = True
    for p in range(partitions):
        last = replies[2 * p]["last-generated-id"]
        group = next(g for g in replies[2 * p + 1] if g["name"] == GROUP.encode())
        delivered = group["last-delivered-id"]
        if delivered != b"0-0":
            started += 1
        if group["pending"] or id_tuple(delivered) < id_tuple(last):
            done = False
    return started, done


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_cpu_s(client: redis.Redis) -> float:
    info: Any = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def cpu_now(client: redis.Redis, workers: Workers) -> tuple[float, float]:
    """(CPU seconds of every worker process together, of redis-server)."""
    return sum(proc_cpu_s(p.pid) for p in workers.procs), redis_cpu_s(client)


def end_to_end(
    client: redis.Redis, url: str, partitions: int, n: int, count: int, logdir: Path
) -> tuple[dict[str, float], Workers]:
    """Start ``count`` workers on the pre-filled feeds; time until all is applied.

    Also reads the CPU the workers and redis-server used over the timed part: per event,
    and in cores (CPU seconds per second), which tells whether the machine's cores, not
    the workers, are the limit. Returns the figures and the still running workers (the
    caller stops them)."""
    spawned = time.perf_counter()
    workers = Workers(url, count, logdir, f"e2e{count}")
    first: float | None = None
    cpu0 = (0.0, 0.0)
    deadline = spawned + APPLY_TIMEOUT_S
    with progress() as bar:
        task = bar.add_task(f"{count} worker(s): feeds applied", total=partitions)
        while True:
            workers.check()
            now = time.perf_counter()
            started, done = feed_progress(client, partitions)
            if started and first is None:
                first = now
                cpu0 = cpu_now(client, workers)
            bar.update(task, completed=started if not done else partitions)
            if done:
                break
            if now > deadline:
                workers.stop()
                raise RuntimeError(f"{count} worker(s) did not apply {n} events in time")
            time.sleep(0.01)
    end = time.perf_counter()
    cpu1 = cpu_now(client, workers)
    assert first is not None
    wall = end - first
    return {
        "events_per_s": n / wall,
        "apply_seconds": wall,
        "startup_seconds": first - spawned,
        "worker_cpu_us_per_event": (cpu1[0] - cpu0[0]) / n * 1e6,
        "redis_cpu_us_per_event": (cpu1[1] - cpu0[1]) / n * 1e6,
        "worker_cores": (cpu1[0] - cpu0[0]) / wall,
        "redis_cores": (cpu1[1] - cpu0[1]) / wall,
        "load_average_1m": os.getloadavg()[0],
    }, workers
