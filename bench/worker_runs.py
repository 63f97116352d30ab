"""The measuring half of ``bench/workers.py``: the feed fill, the raw no-op baseline, the
``memstream worker`` processes and the timing of one end-to-end run, with the CPU the
workers and redis-server used while timed.

An end-to-end run can start its workers warm (``fill_with``): on empty feeds, and the
feeds are filled while they are stopped (SIGSTOP), once their start-up has settled, so
the clock and the CPU counters start at the resume (SIGCONT) and measure applying only.
Started cold on pre-filled feeds instead, a worker's first batches overlap its own
start-up (imports, connections, the first plan in a thread) and the timing includes it.

Other benchmarks (``bench/scale.py``, ``bench/world.py``, ``bench/tensors.py``,
``bench/reads.py``, ``bench/peers.py``) reuse these pieces through ``bench.workers``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
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
QUIET_CPU_S = 0.02
"""A warm start waits until every worker used less than this CPU over QUIET_WINDOW_S."""
QUIET_WINDOW_S = 0.5
STOPPED_SOCKET_TIMEOUT_S = 120
"""Socket timeout of warm-started workers: a read in flight while they are stopped for
the fill must not time out at the resume (the default 3 s would, on a slow fill)."""


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
    """``memstream worker`` processes, logging to a temporary file; SIGTERM on stop.

    ``env`` adds environment variables (worker settings); with ``profile``, each process
    runs under cProfile and writes ``<profile>.<k>`` when it exits (SIGTERM is a clean
    exit)."""

    def __init__(
        self, url: str, count: int, logdir: Path, tag: str,
        *, env: dict[str, str] | None = None, profile: Path | None = None,
    ) -> None:  # fmt: skip
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self.consumers = [f"bench-{tag}-{k}" for k in range(count)]
        environ = {**os.environ, **(env or {})}
        for k, consumer in enumerate(self.consumers):
            log = logdir / f"worker-{tag}-{k}.log"
            self.logs.append(log)
            runner = ["-m", "cProfile", "-o", f"{profile}.{k}"] if profile else []
            argv = [
                sys.executable, *runner, "-m", "memstream.workers.cli", "worker",
                "--redis-url", url, "--consumer", consumer,
                "--block-ms", "1000", "--batch", str(COUNT),
            ]  # fmt: skip
            with log.open("wb") as fh:
                self.procs.append(
                    subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=environ)
                )

    def check(self) -> None:
        for proc, log in zip(self.procs, self.logs, strict=True):
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"worker exited with {proc.returncode}:\n{tail}")

    def signal(self, sig: signal.Signals) -> None:
        for proc in self.procs:
            proc.send_signal(sig)

    def stop(self) -> None:
        self.signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
        stop_all(self.procs, timeout=10)

    def settle(self, client: redis.Redis, timeout: float = APPLY_TIMEOUT_S) -> None:
        """Wait until every worker has joined group v1 (its first read names it) and has
        used almost no CPU for a while: start-up is over and it blocks on the feeds."""
        deadline = time.perf_counter() + timeout
        last = [proc_cpu_s(p.pid) for p in self.procs]
        while True:
            time.sleep(QUIET_WINDOW_S)
            self.check()
            now = [proc_cpu_s(p.pid) for p in self.procs]
            quiet = all(b - a < QUIET_CPU_S for a, b in zip(last, now, strict=True))
            last = now
            if quiet and set(self.consumers) <= joined(client):
                return
            if time.perf_counter() > deadline:
                raise RuntimeError("the workers did not settle on the empty feeds in time")


def joined(client: redis.Redis) -> set[str]:
    """Consumer names in group v1 of partition 0's feed."""
    found: Any = client.xinfo_consumers(keys.feed(0), GROUP)
    return {c["name"].decode() if isinstance(c["name"], bytes) else c["name"] for c in found}


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


def server_usec(client: redis.Redis) -> dict[str, float]:
    """Server time (µs, INFO commandstats) of FCALL (ms_apply, and the workers'
    housekeeping ms_reap_consumers) and FCALL_RO (ms_fetch) since the last reset."""
    stats: Any = client.info("commandstats")
    return {
        name: float(stats.get(f"cmdstat_{name}", {}).get("usec", 0))
        for name in ("fcall", "fcall_ro", "xreadgroup")
    }


def end_to_end(
    client: redis.Redis, url: str, partitions: int, n: int, count: int, logdir: Path,
    *, fill_with: Callable[[], object] | None = None, profile: Path | None = None,
    env: dict[str, str] | None = None,
) -> tuple[dict[str, float], Workers]:  # fmt: skip
    """Time ``count`` workers from start (or resume) until all ``n`` events are applied.

    Without ``fill_with`` the workers start cold on pre-filled feeds and the clock starts
    at the first delivery. With it they start warm: on the empty feeds, settled, stopped
    while ``fill_with()`` fills them, and timed from the resume.

    Also reads the CPU the workers and redis-server used over the timed part: per event,
    and in cores (CPU seconds per second), which tells whether the machine's cores, not
    the workers, are the limit; and the server time of ms_apply and ms_fetch per event.
    ``env`` adds environment variables to the workers' (``bench/fresh_ab.py`` runs another
    revision's worker through ``PYTHONPATH``).
    Returns the figures and the still running workers (the caller stops them)."""
    spawned = time.perf_counter()
    extra = dict(env or {})
    if fill_with:
        extra["MEMSTREAM_SOCKET_TIMEOUT"] = str(STOPPED_SOCKET_TIMEOUT_S)
    workers = Workers(url, count, logdir, f"e2e{count}", env=extra, profile=profile)
    first: float | None = None
    startup: float | None = None
    cpu0 = (0.0, 0.0)
    if fill_with is not None:
        workers.settle(client)
        startup = time.perf_counter() - spawned
        workers.signal(signal.SIGSTOP)
        fill_with()
        client.config_resetstat()
        cpu0 = cpu_now(client, workers)
        first = time.perf_counter()
        workers.signal(signal.SIGCONT)
    else:
        client.config_resetstat()
    deadline = (first or spawned) + APPLY_TIMEOUT_S
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
    usec = server_usec(client)
    assert first is not None
    wall = end - first
    return {
        "events_per_s": n / wall,
        "apply_seconds": wall,
        "startup_seconds": startup if startup is not None else first - spawned,
        "worker_cpu_us_per_event": (cpu1[0] - cpu0[0]) / n * 1e6,
        "redis_cpu_us_per_event": (cpu1[1] - cpu0[1]) / n * 1e6,
        "worker_cores": (cpu1[0] - cpu0[0]) / wall,
        "redis_cores": (cpu1[1] - cpu0[1]) / wall,
        "load_average_1m": os.getloadavg()[0],
        "ms_apply_us_per_event": usec["fcall"] / n,
        "ms_fetch_us_per_event": usec["fcall_ro"] / n,
        "xreadgroup_us_per_event": usec["xreadgroup"] / n,
        "warm": float(fill_with is not None),
    }, workers
