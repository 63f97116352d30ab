"""Replay of one owner in place (`replay --owner`): under live appends, around pending
entries (the owner fence), and its refusals. The oracle is :func:`tests.test_replay.expected`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import redis

from memstream.producers import Producer, Settings, keys
from memstream.producers.connection import async_client, sync_client
from memstream.projections.ops import RebuildKeys, rebuild_command, sortable
from memstream.projections.registry import default_projections
from memstream.workers import replay as replay_mod
from memstream.workers.options import WorkerOptions
from memstream.workers.replay_owner import replay_owner
from memstream.workers.worker import Worker
from tests.test_replay import (
    PARTITIONS,
    CountMessages,
    expected,
    produce,
    seed,
    snapshot,
    wait_drained,
)
from tests.workers_util import running_worker


def same_partition(prefix: str, p: int, skip: str = "") -> str:
    return next(
        f"{prefix}{i}" for i in range(10_000)
        if keys.partition(f"{prefix}{i}", PARTITIONS) == p and f"{prefix}{i}" != skip
    )  # fmt: skip


def dumps(r: redis.Redis, version: int, owner: str) -> dict[bytes, tuple[Any, Any]]:
    p = keys.partition(owner, PARTITIONS)
    found = {}
    for raw in r.scan_iter(match=keys.owner_keys_pattern(p, version, owner)):
        if keys.key_owner(raw.decode(), p, version) == owner:
            found[raw] = (r.dump(raw), r.pexpiretime(raw))
    return found


async def test_owner_rebuild_in_place_under_live_appends(deployed: str, r: redis.Redis) -> None:
    owner = "alice"
    p = keys.partition(owner, PARTITIONS)
    twin = same_partition("alice", p, skip=owner)  # e.g. alice7: a prefix match, same slot
    other = same_partition("bob", p)  # has a session named "alice" in the same slot
    seed(deployed, [owner, twin], 400)
    with Producer.from_url(deployed) as producer:
        producer.append_message(other, owner, "user", "bob's session named alice")
        producer.save_state(other, {"bob": True})
    async with running_worker(deployed):
        await wait_drained(r, 1)
        pk = keys.Projection(p, 1)
        assert r.exists(pk.key("hist", other, owner))  # matches alice's SCAN glob
        before = {o: dumps(r, 1, o) for o in (twin, other)}
        assert all(before.values())
        # Corrupt alice: lose a history, break the state, leave a stray key.
        r.delete(pk.key("hist", owner, "s0"))
        r.hset(pk.key("state", owner), "doc", b"garbage")
        r.set(pk.key("junk", owner, "x"), b"stray")
        stop = asyncio.Event()
        appends = asyncio.create_task(produce(deployed, stop, [owner]))
        await asyncio.sleep(0.2)
        with sync_client(Settings.from_url(deployed)) as client:
            summary = await asyncio.to_thread(replay_owner, client, owner, Settings())
        await asyncio.sleep(0.2)
        stop.set()
        await appends
        await wait_drained(r, 1)
    assert summary.owner == owner and summary.stats.events >= 100
    assert not r.exists(pk.key("junk", owner, "x"))
    assert snapshot(r, 1, owner) == expected(r, owner=owner)
    assert {o: dumps(r, 1, o) for o in (twin, other)} == before
    assert r.hget(keys.fences(p, 1), owner) is not None


@asynccontextmanager
async def counting_worker(url: str, name: str, claim_idle_ms: int = 30_000) -> AsyncIterator[None]:
    settings = Settings.from_url(url)
    options = WorkerOptions(name, block_ms=100, meta_every_s=0.1, claim_idle_ms=claim_idle_ms)
    projections = [*default_projections(), CountMessages()]
    worker = Worker(async_client(settings), settings, options, projections)
    task = asyncio.create_task(worker.run())
    try:
        yield
    finally:
        worker.request_stop()
        await task
        await worker.client.aclose()


async def test_pending_entries_around_an_owner_rebuild_apply_once(
    deployed: str, r: redis.Redis
) -> None:
    owner = "alice"
    p = keys.partition(owner, PARTITIONS)
    pk, feed = keys.Projection(p, 1), keys.feed(p)
    count = pk.key("count", owner)
    with Producer.from_url(deployed) as producer:
        for i in range(10):
            producer.append_message(owner, "s1", "user", f"m{i}")
        async with counting_worker(deployed, "w1"):
            await wait_drained(r, 1)
        assert r.hget(count, "messages") == b"10"
        for i in range(10, 15):
            producer.append_message(owner, "s1", "user", f"m{i}")
        # A consumer reads them and dies before applying: pending, not applied.
        got = r.xreadgroup("v1", "crashed", {feed: ">"}, count=100)
        assert len(got[0][1]) == 5 and r.xpending(feed, "v1")["pending"] == 5
        projections = [*default_projections(), CountMessages()]
        summary = replay_owner(r, owner, Settings(), projections=projections)
        assert summary.stats.events == 15 and r.hget(count, "messages") == b"15"
        head = r.hget(keys.heads(p), owner).decode()
        assert r.hget(keys.fences(p, 1), owner) == sortable(head).encode()
        for i in range(15, 18):
            producer.append_message(owner, "s1", "user", f"m{i}")
        # The takeover reclaims the 5 pending entries: fenced, acked, not applied again.
        async with counting_worker(deployed, "w2", claim_idle_ms=200):
            await asyncio.sleep(0.5)
            await wait_drained(r, 1)
    assert r.hget(count, "messages") == b"18"
    history = r.zrange(pk.key("hist", owner, "s1"), 0, -1)
    assert len(history) == 18 == len(set(history))


def test_rebuild_call_refuses_a_moved_head_and_a_retired_version(
    deployed: str, r: redis.Redis
) -> None:
    owner = "alice"
    p = keys.partition(owner, PARTITIONS)
    with Producer.from_url(deployed) as producer:
        first = producer.save_state(owner, {"v": 1})
        second = producer.save_state(owner, {"v": 2})
    fixed = RebuildKeys(keys.heads(p), keys.fences(p, 1), keys.feed(p))
    stale = rebuild_command(fixed, "v1", owner, head=first.log_id, delete=[], batches=[])
    assert replay_mod.run(r, stale) == [0, second.log_id.encode()]
    retired = rebuild_command(fixed, "v7", owner, head=second.log_id, delete=[], batches=[])
    assert replay_mod.run(r, retired) == [-1, b""]
    assert not r.exists(keys.fences(p, 1))


def test_owner_rebuild_names_a_head_written_by_hand(deployed: str, r: redis.Redis) -> None:
    with Producer.from_url(deployed) as producer:
        producer.append_message("alice", "s", "user", "hi")
    p = keys.partition("alice", PARTITIONS)
    r.hset(keys.heads(p), "alice", "garbage")
    with pytest.raises(replay_mod.ReplayError, match=r"head in ms:\{\d+\}:heads is 'garbage'"):
        replay_owner(r, "alice")
    assert r.xlen(keys.log(p, "alice")) == 1  # nothing stored was touched
