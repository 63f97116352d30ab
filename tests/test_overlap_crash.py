"""A lane prepares batch N+1 (fetch and plan) while batch N's ``ms_apply`` is in flight.

Planning reads no projection state (the planner is pure: entries, their log entries and
the settings in, ops out; ms_apply resolves every op convergently), so a batch planned
early is the batch planned late. What the overlap must not break is the crash path: a
lane that dies with one apply in flight and the next batch fetched and planned leaves
those entries pending, and the consumer that takes over applies each exactly once, the
owner's history in log order. Real Redis, the lane's own loop; the "crash" is the lane's
task cancelled while its apply is held before or after it reached Redis.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
import redis.asyncio

from memstream.producers import Producer, keys
from memstream.producers.settings import Settings
from memstream.projections.reader import AsyncReader
from memstream.projections.registry import default_projections
from memstream.workers.consumer import PartitionConsumer
from memstream.workers.metrics import Metrics
from memstream.workers.options import WorkerOptions
from memstream.workers.plan import Planner

OWNER, SESSION = "overlap-owner", "s1"
EVENTS, BATCH = 40, 10


def lane(client: redis.asyncio.Redis, url: str, consumer: str, **kw: Any) -> PartitionConsumer:
    settings = Settings.from_url(url)
    return PartitionConsumer(
        client, settings, Planner(default_projections(), settings, 5),
        WorkerOptions(consumer=consumer, batch=BATCH, block_ms=10, **kw), Metrics(),
        partition=keys.partition(OWNER, 16), partitions=16, version=1,
    )  # fmt: skip


async def crash_with_apply_held(url: str, held: str) -> tuple[int, int]:
    """Run a lane over every entry (all delivered to it first) until its second
    ``ms_apply`` is held (``held``: "before" it is sent, or "after" Redis ran it) and the
    third batch is fetched and planned; then cancel it. Returns (applies sent, fetches)."""
    client = redis.asyncio.Redis.from_url(url)
    crashed = lane(client, url, "c1")
    applies = fetches = 0
    planned_next = asyncio.Event()
    never = asyncio.Event()
    original = crashed.batches.call

    async def call(fn: Any, *args: Any, **kw: Any) -> Any:
        nonlocal applies, fetches
        name = args[1] if args and args[0] in ("FCALL", "FCALL_RO") else None
        if name == "ms_fetch":
            fetches += 1
        if name != "ms_apply":
            return await original(fn, *args, **kw)
        applies += 1
        if applies == 2 and held == "before":
            await never.wait()
        reply = await original(fn, *args, **kw)
        if applies == 2:
            await never.wait()
        return reply

    crashed.batches.call = call  # the lane's fetches and applies go through it
    for _ in range(EVENTS // BATCH):
        assert len(await crashed._read()) == BATCH  # every entry pending for c1
    stop = asyncio.Event()
    task = asyncio.create_task(crashed.run(stop))
    original_plan = crashed.batches._run_plan

    async def run_plan(*args: Any) -> Any:
        out = await original_plan(*args)
        if fetches >= 3:
            planned_next.set()
        return out

    crashed.batches._run_plan = run_plan  # type: ignore[method-assign,assignment]
    try:
        await asyncio.wait_for(planned_next.wait(), 30)
    except TimeoutError:
        raise AssertionError((applies, fetches, task.done() and task.exception())) from None
    await asyncio.sleep(0.05)  # nothing else may move while the apply is held
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await client.aclose()
    return applies, fetches


async def take_over(url: str, consumer: str) -> Metrics:
    """A lane named ``consumer`` (c1 again: a restart; another name: a claim of the dead
    consumer's entries) run until nothing of the feed is pending."""
    client = redis.asyncio.Redis.from_url(url)
    survivor = lane(client, url, consumer, claim_idle_ms=1 if consumer != "c1" else 30_000)
    stop = asyncio.Event()
    task = asyncio.create_task(survivor.run(stop))
    feed, group = keys.feed(survivor.p), keys.group(1)
    try:
        for _ in range(600):
            await asyncio.sleep(0.05)
            summary: Any = await client.xpending(feed, group)
            if summary["pending"] == 0:
                break
        else:
            raise AssertionError("the entries of the crashed lane were never applied")
    finally:
        stop.set()
        survivor.wake.set()
        await task
        await client.aclose()
    return survivor.metrics


@pytest.mark.parametrize("held", ["before", "after"])
@pytest.mark.parametrize("successor", ["c1", "c2"])
def test_a_crash_with_the_next_batch_planned_applies_each_event_once_in_order(
    deployed: str, r: redis.Redis, held: str, successor: str
) -> None:
    with Producer.from_url(deployed) as producer:
        for i in range(EVENTS):
            producer.append_message(OWNER, SESSION, "user", f"m{i:02d}")
    applies, fetches = asyncio.run(crash_with_apply_held(deployed, held))
    assert (applies, fetches) == (2, 3)  # batch 3 was planned while apply 2 was held

    async def history() -> list[str]:
        async with AsyncReader.from_url(deployed) as reader:
            return [m["content"] for m in await reader.history(OWNER, SESSION, last=100)]

    before = asyncio.run(history())
    expected = [f"m{i:02d}" for i in range(EVENTS)]
    assert before == expected[: BATCH * (2 if held == "after" else 1)]

    metrics = asyncio.run(take_over(deployed, successor))
    assert asyncio.run(history()) == expected
    # Acked with effect: every entry left by the crash, once. (A claim with so short an
    # idle time takes entries back from the survivor itself: those are skipped by the gate.)
    assert metrics.applied - metrics.skipped == EVENTS - len(before)
    assert successor != "c1" or metrics.skipped == 0
