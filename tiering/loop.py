"""The tier process: a pass, then a pause, forever; it never dies of a failure.

A pass that fails (Redis or the archive unreachable) is recorded in
``keys.TIER_STATUS`` for ``memstream status`` and retried after a backoff that grows
with each failure in a row; a pass that finds errors on some owners simply runs again
at the next interval.
"""

from __future__ import annotations

import contextlib
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

import redis

from memstream.producers import keys

from .errors import ArchiveError
from .tier import PassSummary, Tierer


def backoff_s(failures: int, base_s: float = 1.0, cap_s: float = 60.0) -> float:
    """Pause after ``failures`` failed passes in a row: capped exponential, with jitter."""
    grown: float = base_s * 2.0 ** max(failures - 1, 0)
    return min(cap_s, grown) * random.uniform(0.5, 1.0)


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
) -> None:
    failures = 0
    while not stop.is_set():
        try:
            summary = tierer.run_pass()
            print(summary.text(), file=out, flush=True)
            failures = failures + 1 if summary.errors else 0
        except (ArchiveError, redis.RedisError, OSError) as e:
            failures += 1
            print(f"tier pass failed: {e}", file=out, flush=True)
            _record_failure(tierer.client, e)
        pause = backoff_s(failures) if failures else interval_s
        stop.wait(min(pause, interval_s) if failures else pause)


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
