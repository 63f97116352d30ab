"""The Reader's read cache: hits without a round trip, invalidated by change notifications
from another process, read-your-writes after wait(), expiry and lost subscriptions."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis

from memstream.producers import AsyncProducer, Producer
from memstream.projections.base import Query
from memstream.projections.cache import Plan, ReadCache
from memstream.projections.reader import AsyncReader
from tests.workers_util import running_worker, spawn_worker


async def warm(reader: AsyncReader, owner: str) -> Any:
    """Read until the cache serves a hit (the first reads wait for the subscription)."""
    assert reader.read_cache is not None
    for _ in range(200):
        before = reader.read_cache.stats.hits
        value = await reader.state(owner)
        if reader.read_cache.stats.hits > before:
            return value
        await asyncio.sleep(0.01)
    raise AssertionError("the cache never served a hit")


async def until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_hits_skip_redis_and_a_write_by_another_process_invalidates(
    deployed: str, r: redis.Redis
) -> None:
    worker = spawn_worker(deployed, "other-process")
    try:
        with Producer.from_url(deployed) as producer:
            receipt = producer.save_state("alice", {"v": 1})
            async with AsyncReader.from_url(deployed, cache=True) as reader:
                await reader.wait(receipt, timeout=15)
                assert await warm(reader, "alice") == {"v": 1}
                calls = r.info("commandstats").get("cmdstat_hget", {}).get("calls", 0)
                for _ in range(20):
                    assert await reader.state("alice") == {"v": 1}
                after = r.info("commandstats").get("cmdstat_hget", {}).get("calls", 0)
                assert after == calls, "cache hits must not reach Redis"
                stats = reader.cache_stats()
                assert stats["hits"] >= 21 and stats["misses"] >= 1

                producer.save_state("alice", {"v": 2})  # applied by the other process

                async def fresh() -> bool:
                    return await reader.state("alice") == {"v": 2}

                await until(fresh)  # no wait(): only the notification can invalidate
                assert reader.cache_stats()["invalidations"] >= 1
    finally:
        worker.terminate()
        worker.wait(10)


async def test_read_your_writes_even_when_the_notification_is_late(deployed: str) -> None:
    async with (
        AsyncProducer.from_url(deployed) as producer,
        AsyncReader.from_url(deployed, cache=True) as reader,
        running_worker(deployed),
    ):
        await reader.wait(await producer.save_state("alice", {"v": 0}), timeout=10)
        await warm(reader, "alice")
        invalidator: Any = reader._invalidator
        handle = invalidator._handle
        loop = asyncio.get_running_loop()
        # Hold every notification back for a second: only wait() can keep reads fresh.
        invalidator._handle = lambda message: loop.call_later(1.0, handle, message)
        for i in range(1, 6):
            receipt = await producer.save_state("alice", {"v": i})
            assert (await reader.wait(receipt, timeout=10)).applied
            assert await reader.state("alice") == {"v": i}
            assert await reader.state("alice") == {"v": i}  # and cached again


async def test_entry_ends_when_its_key_expires(deployed: str) -> None:
    async with (
        AsyncProducer.from_url(deployed) as producer,
        AsyncReader.from_url(deployed, cache=True) as reader,
        running_worker(deployed, settings={"state_ttl_s": 2}),
    ):
        receipt = await producer.save_state("alice", {"v": 1})
        await reader.wait(receipt, timeout=10)
        assert await warm(reader, "alice") == {"v": 1}
        expires_s = int(receipt.log_id.split("-")[0]) / 1000 + 2
        await asyncio.sleep(max(0.0, expires_s - time.time()) + 0.05)
        assert await reader.state("alice") is None  # no notification: the TTL bounds it


async def test_lost_subscription_clears_the_cache(deployed: str, r: redis.Redis) -> None:
    async with (
        AsyncProducer.from_url(deployed) as producer,
        AsyncReader.from_url(deployed, cache=True) as reader,
        running_worker(deployed),
    ):
        await reader.wait(await producer.save_state("alice", {"v": 1}), timeout=10)
        await warm(reader, "alice")
        assert reader.read_cache is not None and len(reader.read_cache) >= 1
        clears = reader.cache_stats()["clears"]
        r.client_kill_filter(_type="pubsub")
        await until(lambda: _true(reader.cache_stats()["clears"] > clears))
        assert len(reader.read_cache) == 0
        await warm(reader, "alice")  # resubscribed, caching again
        await producer.save_state("alice", {"v": 2})

        async def fresh() -> bool:
            return await reader.state("alice") == {"v": 2}

        await until(fresh)


async def _true(value: bool) -> bool:
    return value


def test_replies_read_before_an_invalidation_are_not_stored() -> None:
    cache = ReadCache()
    plan = Plan(("HGET", "k"), "alice", 1)
    ticket = cache.ticket()
    cache.invalidate("alice")  # the change landed while the read was in flight
    cache.put(plan, [b"old"], float("inf"), ticket)
    assert cache.get(plan, 0) is None
    cache.put(plan, [b"new"], float("inf"), cache.ticket())
    assert cache.get(plan, 0) == [b"new"]
    cache.invalidate("bob")  # another owner's change leaves alice's entry alone
    assert cache.get(plan, 0) == [b"new"]


def test_only_single_owner_stages_are_cacheable() -> None:
    def parse(replies: list[Any]) -> Any:
        return replies

    owner_key, other_key = "ms:{3}:v1:state:alice", "ms:{3}:v1:state:bob"
    assert ReadCache.plan(Query([("HGET", owner_key, "doc")], parse, (owner_key,))) == Plan(
        (("HGET", owner_key, "doc"),), "alice", 3
    )
    assert ReadCache.plan(Query([("GET", "x")], parse, ("ms:{3}:v1:stats",))) is None
    assert ReadCache.plan(Query([("GET", "x")], parse, (owner_key, other_key))) is None
    assert ReadCache.plan(Query([("GET", "x")], parse)) is None


def test_a_stage_with_unhashable_arguments_is_not_cached() -> None:
    key = "ms:{3}:v1:state:alice"
    query: Query[Any] = Query([("HMGET", key, ["a", "b"])], lambda replies: replies, (key,))
    assert ReadCache.plan(query) is None
