"""Entries delivered too often are applied alone before anyone calls them poison
(workers/suspects.py). The delivery counts are set for real with ``XCLAIM ... RETRYCOUNT``
on a real server, as a kill storm or a starved worker would leave them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import redis

from memstream.producers import Producer, Receipt, keys
from memstream.producers.events_messages import MessageAppended
from memstream.projections.reader import Reader
from memstream.workers.suspects import POISON_DEATHS
from tests.workers_util import running_worker

OWNER = "suspect-owner"
PARTITIONS = 16


def _append(url: str, n: int) -> list[Receipt]:
    with Producer.from_url(url) as producer:
        return producer.append_many(
            [(OWNER, MessageAppended(role="user", content=f"m{i}"), "s") for i in range(n)]
        )


def _taken_over(r: redis.Redis, p: int, times: int) -> list[str]:
    """Deliver every entry of the feed to a consumer that then "dies", with ``times``
    deliveries recorded on each: what repeated take-overs leave behind."""
    feed, group = keys.feed(p), keys.group(1)
    reply: Any = r.xreadgroup(group, "gone", {feed: ">"})
    ids = [i.decode() for i, _ in reply[0][1]]
    r.xclaim(feed, group, "gone", 0, ids, retrycount=times)
    return ids


def _dlq(r: redis.Redis, p: int) -> list[dict[bytes, bytes]]:
    return [f for _, f in r.xrange(keys.dlq(p))]


def _history(url: str) -> list[str]:
    with Reader.from_url(url) as reader:
        return [m["content"] for m in reader.history(OWNER, "s", last=100)]


async def _until(check: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_entries_taken_over_too_often_are_applied_not_dead_lettered(
    deployed: str, r: redis.Redis
) -> None:
    _append(deployed, 20)
    p = keys.partition(OWNER, PARTITIONS)
    _taken_over(r, p, times=12)  # far past --max-deliveries 5
    async with running_worker(deployed, "w1", claim_idle_ms=100, max_deliveries=5):
        await _until(lambda: len(_history(deployed)) == 20)
    assert _history(deployed) == [f"m{i}" for i in range(20)]
    assert _dlq(r, p) == []
    assert not r.exists(keys.suspects(p, 1))  # every marker went with its apply


async def test_an_entry_whose_appliers_died_alone_is_dead_lettered_alone(
    deployed: str, r: redis.Redis
) -> None:
    _append(deployed, 5)
    p = keys.partition(OWNER, PARTITIONS)
    ids = _taken_over(r, p, times=9)
    # A worker that is gone (no heartbeat) died applying the second entry alone, once.
    r.hset(keys.suspects(p, 1), ids[1], f"dead-worker|{POISON_DEATHS - 1}")
    async with running_worker(deployed, "w1", claim_idle_ms=100, max_deliveries=5):
        await _until(lambda: len(_dlq(r, p)) == 1 and len(_history(deployed)) == 4)
    (letter,) = _dlq(r, p)
    assert letter[b"feed_id"].decode() == ids[1]
    assert b"applying it alone failed 2 times" in letter[b"reason"]
    assert _history(deployed) == ["m0", "m2", "m3", "m4"]
    assert not r.exists(keys.suspects(p, 1))


async def test_a_live_consumer_applying_an_entry_alone_is_not_taken_for_dead(
    deployed: str, r: redis.Redis
) -> None:
    _append(deployed, 3)
    p = keys.partition(OWNER, PARTITIONS)
    ids = _taken_over(r, p, times=9)
    r.hset(keys.suspects(p, 1), ids[0], "slow-worker|0")
    r.set(keys.heartbeat("slow-worker"), "{}", px=60_000)
    async with running_worker(deployed, "w1", claim_idle_ms=100, max_deliveries=5):
        await _until(lambda: len(_history(deployed)) == 2)
        await asyncio.sleep(0.5)  # several claim rounds: still left for the live one
        assert _history(deployed) == ["m1", "m2"] and _dlq(r, p) == []
        r.delete(keys.heartbeat("slow-worker"))  # it died after all: one death, retried
        await _until(lambda: len(_history(deployed)) == 3)
    assert _history(deployed) == ["m0", "m1", "m2"] and _dlq(r, p) == []
