"""Resharding on a real Cluster: slots holding live partitions move between primaries
while a producer appends and a worker applies; nothing is lost, nothing applied twice."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from memstream.producers import AsyncProducer, MemstreamError, Producer, Receipt, keys
from memstream.projections.reader import AsyncReader
from memstream.workers.cli import main
from memstream.workers.deploy import init
from tests.redis_cluster import RedisClusterNodes
from tests.workers_util import running_worker

OWNERS = [f"agent{i}" for i in range(12)]
PER_OWNER = 60
"""Below the history cap (100): every message of an owner stays in its history."""


@pytest.fixture
def resharded(tmp_path: Path) -> Iterator[RedisClusterNodes]:
    """A cluster of its own: the test changes which primary owns which slots."""
    cluster = RedisClusterNodes(tmp_path)
    yield cluster
    cluster.stop()


def _load(url: str, sent: dict[str, list[str]], receipts: list[Receipt], failed: list[str]) -> None:
    with Producer.from_url(url) as producer:
        for n in range(PER_OWNER):
            for owner in OWNERS:
                text = f"{owner} {n}"
                try:
                    receipts.append(producer.append_message(owner, "s1", "user", text))
                    sent[owner].append(text)
                except MemstreamError as e:
                    failed.append(f"{type(e).__name__}: {e}")


async def test_moving_live_slots_loses_nothing_and_applies_once(
    resharded: RedisClusterNodes,
) -> None:
    url = resharded.url
    with Producer.from_url(url) as admin:
        init(admin.client, partitions=16)
        for owner in OWNERS:
            admin.start_session(owner, "s1")
    sent: dict[str, list[str]] = {o: [] for o in OWNERS}
    receipts: list[Receipt] = []
    failed: list[str] = []
    partitions = sorted({keys.partition(o, 16) for o in OWNERS})
    load = threading.Thread(target=_load, args=(url, sent, receipts, failed), daemon=True)
    moved = 0
    async with running_worker(url), AsyncReader.from_url(url) as reader:
        load.start()
        with redis.Redis(port=resharded.port) as c:
            slots = [int(c.execute_command("CLUSTER KEYSLOT", keys.feed(p))) for p in partitions]
        for slot in slots[:4]:
            await asyncio.sleep(0.1)
            owner_port = resharded._slot_owner(slot)
            target = next(n.port for n in resharded.primaries() if n.port != owner_port)
            moved += await asyncio.to_thread(resharded.move_slot, slot, target)
        await asyncio.to_thread(load.join, 60)
        assert main(["init", "--redis-url", url]) == 0  # part of resharding (operations.md)
        for receipt in receipts[-len(OWNERS) :]:
            assert (await reader.wait(receipt, timeout=30)).applied
        with Producer.from_url(url) as check:
            for owner in OWNERS:  # the logs hold every acknowledged append, once
                log = check.client.xrange(keys.log(keys.partition(owner, 16), owner))
                assert len(log) == len(sent[owner]) + 1, owner  # + session.started
        # A batch that failed while its slot moved stays pending and is redelivered.
        deadline = asyncio.get_running_loop().time() + 40
        for owner in OWNERS:
            while True:
                history = await reader.history(owner, "s1", last=PER_OWNER)
                if [m["content"] for m in history] == sent[owner]:
                    break
                assert asyncio.get_running_loop().time() < deadline, (owner, history[-3:])
                await asyncio.sleep(0.2)
    assert moved > 0
    # An append whose slot is half-migrated was refused now and then ("Script attempted to
    # access a non local key"), before it wrote; the producer now retries it (see the
    # test below), so such a refusal must not reach the caller.
    print(f"acknowledged {len(receipts)}, refused {len(failed)}: {failed[:2]}")
    assert not [f for f in failed if "non local key" in f]
    assert len(failed) <= len(OWNERS) * PER_OWNER // 20
    assert sum(len(v) for v in sent.values()) + len(failed) == len(OWNERS) * PER_OWNER


async def test_an_append_meeting_a_half_moved_slot_is_retried_and_stored_once(
    resharded: RedisClusterNodes,
) -> None:
    """While its slot is MIGRATING (every key still on the source), ``ms_append`` with an
    eid is refused by its eid lookup, before any write; the producers retry it within
    their deadline (``driver.is_migrating``) and it lands once the move is done."""
    url = resharded.url
    with Producer.from_url(url) as admin:
        init(admin.client, partitions=16)
        admin.save_state("ada", {"v": 0})
        slot = int(admin.client.keyslot(keys.feed(keys.partition("ada", 16))))  # type: ignore[attr-defined]
    p = keys.partition("ada", 16)
    source = resharded._slot_owner(slot)
    target = next(n.port for n in resharded.primaries() if n.port != source)
    ports = resharded.begin_move(slot, target)
    with redis.Redis(port=source) as src:
        raw = ("FCALL", "ms_append", 2, keys.log(p, "ada"), keys.feed(p), "type", "state.saved",
               "data", b"\x81\xa1v\x01", "eid", "raw1")  # fmt: skip
        with pytest.raises(redis.ResponseError, match="non local key"):
            src.execute_command(*raw)
        assert src.xlen(keys.log(p, "ada")) == 1, "refused before it wrote"
    with Producer.from_url(url) as producer:
        async with AsyncProducer.from_url(url) as aproducer:
            sync_append = asyncio.create_task(
                asyncio.to_thread(producer.save_state, "ada", {"v": 1})
            )
            async_append = asyncio.create_task(aproducer.save_state("ada", {"v": 2}))
            await asyncio.sleep(0.5)  # both are being refused and retried meanwhile
            assert not sync_append.done() and not async_append.done()
            await asyncio.to_thread(resharded.finish_move, slot, ports)
            receipts = [await sync_append, await async_append]
    with redis.Redis(port=target) as dst:
        log = dst.xrange(keys.log(p, "ada"))
        assert len(log) == 3  # the first append and the two retried ones, once each
        assert {r.log_id.encode() for r in receipts} <= {entry_id for entry_id, _ in log}
        assert dst.hget(keys.heads(p), "ada") == log[-1][0]
