"""``memstream worker`` with timestamps, for ``bench/freshness.py --trace``.

    python -m bench.fresh_worker TRACE.json worker --redis-url ... (the CLI's arguments)

Wraps the feed read and the apply call of the real worker (nothing else changes) and
records, on the system-wide monotonic clock that the benchmark's processes share:

* ``reads``: when each XREADGROUP returned, with the feed ids it delivered;
* ``applies``: for each ``ms_apply``, when its batch's preparation started (log fetch and
  planning), when the call was sent, when it returned, and its feed ids;
* ``gc``: each collection's start and duration.

They are written to TRACE.json when the worker exits (SIGTERM, as the benchmark stops it).
"""

from __future__ import annotations

import atexit
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

from memstream.workers import consumer, feeds
from memstream.workers.batch import Prepared
from memstream.workers.cli import main
from memstream.workers.plan import FeedEntry

READS: list[tuple[float, list[str]]] = []
APPLIES: list[tuple[float, float, float, list[str]]] = []
GC: list[tuple[float, float]] = []


def install() -> None:
    read_feeds = feeds.read_feeds

    async def traced_read(*args: Any, **kw: Any) -> dict[str, list[FeedEntry]]:
        found = await read_feeds(*args, **kw)
        if found:
            READS.append((time.monotonic(), [e.feed_id for es in found.values() for e in es]))
        return found

    feeds.read_feeds = traced_read
    finish = consumer.PartitionLane.finish

    async def traced_finish(self: consumer.PartitionLane, batch: Prepared) -> None:
        outcome, _, started = batch
        sent = time.monotonic()
        await finish(self, batch)
        # `started` is perf_counter: on Linux the same CLOCK_MONOTONIC as time.monotonic.
        APPLIES.append((started, sent, time.monotonic(), [f for f, _ in outcome.entries]))

    consumer.PartitionLane.finish = traced_finish  # type: ignore[method-assign]
    began: list[float] = []

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            began.append(time.monotonic())
        elif began:
            start = began.pop()
            GC.append((start, time.monotonic() - start))

    gc.callbacks.append(on_gc)


def dump(path: Path) -> None:
    path.write_text(json.dumps({"reads": READS, "applies": APPLIES, "gc": GC}))


if __name__ == "__main__":
    target = Path(sys.argv[1])
    install()
    atexit.register(dump, target)
    sys.exit(main(sys.argv[2:]))
