"""The async reader's one-timer exchange (projections/async_wire.py): once its kept
connection is connected, reads skip redis-py's per-operation send and read (no
``wait_for`` task, no timer per reply) and still read replies, callbacks and error replies
as redis-py does; a reply slower than ``socket_timeout`` raises redis-py's TimeoutError
and the connection is dropped, never kept; an idle connection is health-checked first."""

from __future__ import annotations

from typing import Any

import pytest
import redis
import redis.asyncio
from redis.asyncio.connection import Connection

from memstream.producers.packer import pack_many
from memstream.projections import AsyncReader
from memstream.projections.async_wire import exchange, serves

OWNER = "agent.wire"


async def test_reads_on_a_connected_connection_bypass_redis_py_send(
    deployed: str, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[Any] = []
    original = Connection.send_packed_command

    async def counting(self: Any, command: Any, check_health: bool = True) -> None:
        sent.append(command)
        await original(self, command, check_health)

    monkeypatch.setattr(Connection, "send_packed_command", counting)
    r.set("wire:string", "x")
    async with AsyncReader.from_url(deployed) as ard:
        direct = ard._direct
        assert direct is not None
        assert await ard.history(OWNER, "s1") == []  # connects: redis-py's own path
        before = len(sent)
        for _ in range(3):
            assert await ard.history(OWNER, "s1") == [] and await ard.state(OWNER) is None
        assert await direct.execute("ECHO", "one") == b"one"
        error, value = await direct.execute_many(
            [("LRANGE", "wire:string", 0, -1), ("GET", "wire:string")], [{}, {}]
        )
        assert isinstance(error, redis.ResponseError) and "WRONGTYPE" in str(error)
        assert value == b"x"
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            await direct.execute("LRANGE", "wire:string", 0, -1)
        # A reply callback still applies (redis-py turns SET's b"OK" into True).
        assert await direct.execute("SET", "wire:other", "y") is True
        assert len(sent) == before  # none of these went through send_packed_command
        assert len(direct._kept) == 1


async def test_a_slow_reply_times_out_as_redis_py_and_drops_the_connection(
    deployed: str,
) -> None:
    async with AsyncReader.from_url(deployed, socket_timeout=0.2) as ard:
        direct = ard._direct
        assert direct is not None
        assert await direct.execute("PING") is True
        (kept,) = direct._kept
        assert serves(kept, ({},)) and not serves(kept, ({"parse_detail": True},))
        with pytest.raises(redis.TimeoutError, match="Timeout reading from"):
            await direct.execute("BLPOP", "wire:empty", 2)
        assert direct._kept == [] and kept.is_connected is False
        assert await ard.history(OWNER, "s1") == []  # a fresh connection serves the next


async def test_an_idle_connection_is_pinged_before_the_exchange(deployed: str) -> None:
    client = redis.asyncio.Redis.from_url(deployed, health_check_interval=30)
    try:
        pool: Any = client.connection_pool
        conn: Any = await pool.get_connection()
        await conn.connect()
        conn.next_health_check = -1.0  # as if idle past the interval
        seen: list[str] = []
        original = conn.check_health

        async def check() -> None:
            seen.append("ping")
            await original()

        conn.check_health = check
        assert await exchange(client, conn, [("ECHO", "a"), ("ECHO", "b")]) == [b"a", b"b"]
        assert seen == ["ping"] and conn.next_health_check > 0
        assert await exchange(client, conn, [("ECHO", "c")]) == [b"c"] and seen == ["ping"]
        await pool.release(conn)
    finally:
        await client.aclose()


def test_an_unconnected_connection_keeps_redis_py() -> None:
    conn = Connection()
    assert not serves(conn, ({},))  # not connected yet: redis-py connects it


@pytest.mark.parametrize(
    "commands",
    [
        [("ZRANGE", "k", -20, -1), ("GET", "life")],
        [("SET", "k", b"\x00\xff", "EX", 10), ("HSET", "h", "f", 1.5, "g", "ünï")],
        [("CLIENT SETNAME", "n"), ("SET", "k", bytearray(b"ba")), ("SET", "k", memoryview(b"m"))],
    ],
    ids=["hot", "types", "redis-py-only"],
)
def test_pack_many_gives_redis_py_bytes(commands: list[tuple[Any, ...]]) -> None:
    conn = Connection()
    assert pack_many(commands, conn.pack_command) == b"".join(conn.pack_commands(commands))
