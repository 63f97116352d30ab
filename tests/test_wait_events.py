"""``wait`` wakes on the entry's change record (projections/waiter.py), against a real
worker; it polls when the subscription is refused or lost, and its timeout error is the
one it always raised."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

from memstream.producers import MessageAppended, Producer, Receipt
from memstream.projections.reader import AsyncReader, Reader
from memstream.projections.wait import WaitTimeoutError
from memstream.projections.waiter import ChangeWaiter
from tests.redis_server import RedisServer
from tests.workers_util import running_worker

OWNER, SESSION = "wait-user", "s1"


def _append(url: str, text: str = "hello") -> Receipt:
    with Producer.from_url(url) as producer:
        return producer.append(OWNER, MessageAppended(role="user", content=text), session=SESSION)


async def _watcher(reader: AsyncReader) -> ChangeWaiter:
    for _ in range(2000):
        if reader._waiter is not None and reader._waiter._watches:
            return reader._waiter
        await asyncio.sleep(0.005)
    raise AssertionError("the wait never watched its record")


@pytest.mark.topologies
async def test_async_wait_wakes_on_the_change_record(deployed: str) -> None:
    receipt = _append(deployed)
    async with AsyncReader.from_url(deployed) as reader:
        waiting = asyncio.create_task(reader.wait(receipt, timeout=30))
        waiter = await _watcher(reader)
        async with running_worker(deployed):
            result = await waiting
        assert result.applied
        assert waiter.woken == 1
        assert not waiter._watches  # the finished wait no longer listens
        assert [m["content"] for m in await reader.history(OWNER, SESSION)] == ["hello"]
        # The partition stays subscribed: a second wait needs no new subscription.
        assert receipt.partition in waiter._confirmed
        async with running_worker(deployed):
            again = _append(deployed, "again")
            assert (await reader.wait(again, timeout=30)).applied
        assert len(await reader.history(OWNER, SESSION)) == 2


async def test_sync_wait_wakes_on_the_change_record(deployed: str) -> None:
    receipt = _append(deployed)
    reader = Reader.from_url(deployed)
    try:
        waiting = asyncio.create_task(asyncio.to_thread(reader.wait, receipt, 30))
        waiter = await _watcher(reader._async)
        async with running_worker(deployed):
            result = await waiting
        assert result.applied and waiter.woken == 1
        assert [m["content"] for m in reader.history(OWNER, SESSION)] == ["hello"]
    finally:
        reader.close()


async def test_wait_looks_again_after_losing_its_subscription(
    deployed: str, r: redis.Redis
) -> None:
    receipt = _append(deployed)
    async with AsyncReader.from_url(deployed) as reader:
        waiting = asyncio.create_task(reader.wait(receipt, timeout=30))
        waiter = await _watcher(reader)
        first = waiter._task
        call: Any = r.execute_command
        assert int(call("CLIENT", "KILL", "TYPE", "pubsub")) >= 1
        for _ in range(400):  # the wait notices, and watches again on a new connection
            if waiter._task is not first and receipt.partition in waiter._confirmed:
                break
            await asyncio.sleep(0.005)
        assert waiter._task is not first and receipt.partition in waiter._confirmed
        async with running_worker(deployed):
            assert (await waiting).applied
        assert waiter.woken == 1  # by the record, through the new subscription


@pytest.fixture
def no_channels_url(r: redis.Redis, redis_server: RedisServer) -> Any:
    """A reader user with every read right but no pub/sub channel (``resetchannels``)."""
    call: Any = r.execute_command
    call("ACL", "SETUSER", "blind", "on", ">pw-blind", "resetkeys", "resetchannels", "-@all",
         "+@read", "+@connection", "+ssubscribe", "+sunsubscribe", "-@dangerous",
         "%R~ms:meta", "%R~ms:{*}:v*", "%R~ms:{*}:feed", "%R~ms:{*}:dlq")  # fmt: skip
    yield f"redis://blind:pw-blind@127.0.0.1:{redis_server.port}/0"
    call("ACL", "DELUSER", "blind")


async def test_wait_polls_when_the_subscription_is_refused(
    deployed: str, no_channels_url: str
) -> None:
    receipt = _append(deployed)
    async with AsyncReader.from_url(no_channels_url) as reader:
        waiting = asyncio.create_task(reader.wait(receipt, timeout=30))
        for _ in range(400):
            if reader._waiter is not None and reader._waiter.refused:
                break
            await asyncio.sleep(0.005)
        assert reader._waiter is not None and reader._waiter.refused
        async with running_worker(deployed):
            result = await waiting
        assert result.applied
        assert reader._waiter.woken == 0  # applied, seen by polling alone
        # Refused: later waits poll at once, without asking again.
        with pytest.raises(WaitTimeoutError, match=r"not applied after 0\.2s"):
            await reader.wait(_append(deployed, "late"), timeout=0.2)


@pytest.mark.parametrize("sync", [False, True])
async def test_wait_timeout_raises_the_same_error(deployed: str, sync: bool) -> None:
    receipt = _append(deployed)  # no worker: never applied
    if sync:
        with Reader.from_url(deployed) as blocking, pytest.raises(WaitTimeoutError) as caught:
            blocking.wait(receipt, timeout=0.3)
    else:
        async with AsyncReader.from_url(deployed) as reader:
            with pytest.raises(WaitTimeoutError) as caught:
                await reader.wait(receipt, timeout=0.3)
            assert reader._waiter is not None and receipt.partition in reader._waiter._confirmed
    assert str(caught.value) == (f"entry {receipt.feed_id} of {OWNER} not applied after 0.3s")
    assert isinstance(caught.value, TimeoutError)
