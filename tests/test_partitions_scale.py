"""A worker's connections do not grow with the partition count (issue 10, item 2).

With one blocking XREADGROUP per version over every feed, and the apply lanes sharing a
small semaphore, 16, 128 and 1,024 partitions all drain on default settings (a pool of
64) while the worker holds the same few connections.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from memstream.producers import Producer, keys
from memstream.producers.events_messages import MessageAppended
from memstream.projections.reader import Reader
from memstream.workers.deploy import init
from memstream.workers.options import WorkerOptions
from tests.workers_util import running_worker

BOUND = WorkerOptions(consumer="x").connections + 8
"""Lanes' semaphore, plus readers (2), probe, meta, trim, heartbeat, unblock calls."""


def _msg(content: str) -> MessageAppended:
    return MessageAppended(role="user", content=content)


def _drained(r: redis.Redis, partitions: int) -> bool:
    pipe = r.pipeline(transaction=False)
    for p in range(partitions):
        pipe.xinfo_groups(keys.feed(p))
    for groups in pipe.execute():
        [group] = groups
        if int(group["pending"]) or int(group["lag"] or 0):
            return False
    return True


@pytest.mark.parametrize("partitions", [16, 128, 1024])
@pytest.mark.timeout(180)
async def test_connections_do_not_grow_with_partitions(
    r: redis.Redis, redis_url: str, partitions: int
) -> None:
    init(r, partitions=partitions)
    owners = [f"agent-{i}" for i in range(3 * partitions)]
    used = {keys.partition(o, partitions) for o in owners}
    assert len(used) > partitions * 0.9  # the events really are spread
    with Producer.from_url(redis_url) as producer:
        producer.append_many([(o, _msg(o), "s") for o in owners])
    before = len(r.client_list())
    peak = 0
    async with running_worker(redis_url, block_ms=1000, meta_every_s=1.0):
        deadline = time.monotonic() + 120
        while not _drained(r, partitions):
            peak = max(peak, len(r.client_list()) - before)
            assert time.monotonic() < deadline, "the worker did not drain every feed"
            await asyncio.sleep(0.05)
        # Live appends while idle: the one blocking read wakes for any partition.
        with Producer.from_url(redis_url) as producer:
            producer.append_many([(o, _msg("2"), "s") for o in owners[:50]])
        while not _drained(r, partitions):
            peak = max(peak, len(r.client_list()) - before)
            assert time.monotonic() < deadline, "live appends were not applied"
            await asyncio.sleep(0.05)
        peak = max(peak, len(r.client_list()) - before)
    print(f"partitions={partitions} peak connections={peak}")
    assert 2 <= peak <= BOUND, peak
    with Reader.from_url(redis_url) as reader:
        for i, owner in enumerate(owners):
            got = [m["content"] for m in reader.history(owner, "s", last=5)]
            assert got == ([owner, "2"] if i < 50 else [owner]), owner
