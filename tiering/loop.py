"""The tier process: a pass, then a pause, forever; it never dies of a failure.

A pass that fails (Redis or the archive unreachable) is recorded in
``keys.TIER_STATUS`` for ``memstream status``; it, or a pass that finds errors on some
owners, is retried after a backoff that grows with each failure in a row (capped at the
interval), and the whole run of failures logs one warning (workers/resilience.py).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

import redis

from memstream.producers import keys
from memstream.producers.errors import MemstreamError
from memstream.workers.resilience import Backoff, Episode

from .errors import ArchiveError
from .tier import PassSummary, Tierer

log = logging.getLogger("memstream.tier")


def _record_failure(client: redis.Redis, error: Exception) -> None:
    now = int(time.time() * 1000)
    with contextlib.suppress(redis.RedisError):
        client.hset(keys.TIER_STATUS, mapping={"last_error": str(error)[:500],
                                               "last_error_ms": now, "failing": 1})  # fmt: skip
        client.hincrby(keys.TIER_STATUS, "errors", 1)


def run_forever(
    tierer: Tierer,
    interval_s: float,
    stop: threading.Event,
    out: TextIO = sys.stderr,
    on_pass: Callable[[PassSummary | None, float], None] | None = None,
) -> None:
    """Run passes every ``interval_s`` until ``stop`` is set; each pass's summary goes to
    ``out``. A pass that fails, or finds errors, is one retry of an outage, logged once:
    WARNING on the first failure (with the retry number and the next delay), INFO on
    recovery. ``on_pass`` (metrics) hears of every pass: its summary (None when it
    failed) and its seconds."""
    outage = Episode(log, "a tier pass", Backoff(base=1.0, cap=60.0))
    while not stop.is_set():
        started = time.monotonic()
        try:
            summary = tierer.run_pass()
        except (ArchiveError, redis.RedisError, MemstreamError, OSError) as e:
            if on_pass is not None:
                on_pass(None, time.monotonic() - started)
            _record_failure(tierer.client, e)
            stop.wait(min(outage.failed(e), interval_s))
            continue
        if on_pass is not None:
            on_pass(summary, time.monotonic() - started)
        print(summary.text(), file=out, flush=True)
        if summary.errors:  # the archive or some owners failed: the same outage goes on
            stop.wait(min(outage.failed(str(summary.errors[0])), interval_s))
            continue
        outage.recovered()
        stop.wait(interval_s)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGTERM or SIGINT, so a pass finishes its segment and exits."""
    stop = threading.Event()
    previous: dict[signal.Signals, Any] = {}

    def handler(signum: int, frame: object) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def progress(show: bool, partitions: int) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar over partitions on stderr, or nothing."""
    if not show:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("tiering"), BarColumn(), MofNCompleteColumn(),
        TextColumn("partitions, {task.fields[entries]:,} entries"), TimeElapsedColumn(),
    )  # fmt: skip
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task("tier", total=partitions, entries=0)
        yield lambda done, entries: bar.update(task, completed=done, entries=entries)


def once(tierer: Tierer, partitions: int, show: bool) -> PassSummary:
    with progress(show, partitions) as advance:
        return tierer.run_pass(advance)
