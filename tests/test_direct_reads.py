"""The blocking reader's kept connection (projections/direct.py): one-command reads reuse
it; an error reply keeps it, a broken connection is dropped and the read retried; a
small pool still serves every other read; close disconnects it."""

from __future__ import annotations

import asyncio

import pytest
import redis
import redis.asyncio

from memstream.producers import Producer
from memstream.projections import AsyncReader, Reader
from memstream.projections.direct import Direct
from tests.workers_util import spawn_worker, stop_worker

OWNER = "agent.direct"


def connection_id(direct: Direct) -> int:
    """The server's id of the connection ``direct`` keeps (asked on that connection)."""
    return int(direct.execute("CLIENT", "ID"))


def test_one_command_reads_reuse_one_connection(deployed: str, r: redis.Redis) -> None:
    with Reader.from_url(deployed) as rd:
        direct = rd._core.direct
        assert direct is not None
        assert rd.history(OWNER, "s1") == [] and rd.state(OWNER) is None
        (kept,) = direct._kept
        for _ in range(5):
            assert rd.history(OWNER, "s1") == []
        assert direct._kept == [kept]
        # An error reply (the key holds a string) is read whole: the connection stays.
        r.set("direct:notalist", "x")
        try:
            direct.execute("LRANGE", "direct:notalist", 0, -1)
        except redis.ResponseError as e:
            assert "WRONGTYPE" in str(e)
        else:
            raise AssertionError("LRANGE of a string must fail")
        assert direct._kept == [kept]
    assert direct._kept == [] and kept._sock is None  # close() disconnected it


def test_a_killed_connection_is_dropped_and_the_read_retried(deployed: str, r: redis.Redis) -> None:
    worker = spawn_worker(deployed, "wdirect")
    try:
        with Producer.from_url(deployed) as producer, Reader.from_url(deployed) as rd:
            assert rd.wait(producer.append_message(OWNER, "s1", "user", "hi"), 20).applied
            assert [m.content for m in rd.history(OWNER, "s1")] == ["hi"]
            direct = rd._core.direct
            assert direct is not None
            first = connection_id(direct)
            r.client_kill_filter(_id=str(first))
            # The kept socket is dead: the read fails once, is retried on a new connection.
            assert [m.content for m in rd.history(OWNER, "s1")] == ["hi"]
            assert len(direct._kept) == 1 and connection_id(direct) != first
    finally:
        assert stop_worker(worker) == 0


def test_a_pool_of_two_serves_pipelines_and_the_log_beside_the_kept_one(deployed: str) -> None:
    with Reader.from_url(deployed, max_connections=2) as rd:
        assert rd._core.direct is not None
        assert rd.history(OWNER, "s1") == []
        assert rd.context(OWNER, "deploy").text is not None  # a pipelined read
        assert rd.log(OWNER) == []  # the cold log's own client calls
        assert rd.history(OWNER, "s1") == []
    with Reader.from_url(deployed, max_connections=1) as one:
        assert one._core.direct is None  # nothing to keep from a pool of one
        assert one.history(OWNER, "s1") == [] and one.context(OWNER, "x").text is not None


def test_only_plain_pooled_clients_are_served(deployed: str) -> None:
    assert Direct.serves(redis.Redis.from_url(deployed))
    assert not Direct.serves(redis.Redis.from_url(deployed, single_connection_client=True))
    assert not Direct.serves(object())


async def test_the_async_reader_keeps_one_connection_and_drops_a_cancelled_one(
    deployed: str, r: redis.Redis
) -> None:
    async with AsyncReader.from_url(deployed) as ard:
        direct = ard._direct
        assert direct is not None
        assert await ard.history(OWNER, "s1") == [] and await ard.state(OWNER) is None
        (kept,) = direct._kept
        assert await ard.history(OWNER, "s1") == [] and direct._kept == [kept]
        r.set("direct:notalist", "x")
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            await direct.execute("LRANGE", "direct:notalist", 0, -1)
        assert direct._kept == [kept]
        # Cancelled mid-read (as a read deadline cancels): that connection is not kept.
        task = asyncio.ensure_future(direct.execute("BLPOP", "direct:empty", 5))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert direct._kept == [] and kept.is_connected is False
        assert await ard.history(OWNER, "s1") == [] and len(direct._kept) == 1
        in_use = len(direct.pool._in_use_connections)
    assert in_use == 1  # the kept one only: the cancelled one went back to the pool
    assert direct._kept == []


async def test_a_user_supplied_single_connection_client_is_not_served(deployed: str) -> None:
    client = redis.asyncio.Redis.from_url(deployed, single_connection_client=True)
    async with AsyncReader(client) as ard:
        assert ard._direct is None
        assert await ard.history(OWNER, "s1") == []


def test_a_few_commands_go_in_one_write_with_error_replies_in_place(
    deployed: str, r: redis.Redis
) -> None:
    r.set("direct:many", "x")
    with Reader.from_url(deployed) as rd:
        direct = rd._core.direct
        assert direct is not None
        commands = [("GET", "direct:many"), ("LRANGE", "direct:many", 0, -1), ("ECHO", "after")]
        first, error, after = direct.execute_many(commands, [{}, {}, {}])
        assert (first, after) == (b"x", b"after")
        assert isinstance(error, redis.ResponseError) and "WRONGTYPE" in str(error)
        (kept,) = direct._kept  # every reply was read: the connection stays in step
        assert direct.execute("ECHO", "next") == b"next" and direct._kept == [kept]


async def test_the_async_reader_sends_a_few_commands_in_one_write(
    deployed: str, r: redis.Redis
) -> None:
    r.set("direct:many", "x")
    async with AsyncReader.from_url(deployed) as rd:
        direct = rd._direct
        assert direct is not None
        commands = [("LRANGE", "direct:many", 0, -1), ("GET", "direct:many")]
        error, value = await direct.execute_many(commands, [{}, {}])
        assert isinstance(error, redis.ResponseError) and value == b"x"
        assert await direct.execute("ECHO", "next") == b"next" and len(direct._kept) == 1
