"""FastPacker gives the bytes and errors redis-py's own hiredis packer gives."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from redis import connection

from memstream.producers.connection import ClippedConnection
from memstream.producers.packer import FastPacker

COMMANDS: list[tuple[Any, ...]] = [
    ("PING",),
    ("SET", "k", b"\x00\xff binary", "EX", 10),
    ("FCALL", "ms_append", 2, "ms:{3}:log:a", "ms:{3}:feed", "type", "t.x", "data", b"x" * 300),
    ("HSET", "h", "f", 1.5, "g", -7, "ünïcödé", "😀"),
    ("SET", "k", bytearray(b"ba"), "GET"),
    ("SET", "k", memoryview(b"mv")),
    ("CLIENT SETNAME", "n"),  # redis-py splits a first argument with spaces
    (b"GET", "k"),
    ("SET", "k", ""),
]


Connection: Any = connection.Connection  # untyped in redis-py


def test_fast_packer_is_installed_on_memstream_connections() -> None:
    assert isinstance(ClippedConnection()._command_packer, FastPacker)


@pytest.mark.parametrize(
    "command", COMMANDS, ids=[c[0] if isinstance(c[0], str) else "bytes" for c in COMMANDS]
)
def test_same_bytes_as_redis_py(command: tuple[Any, ...]) -> None:
    ours: Any = ClippedConnection()
    theirs = Connection()
    assert b"".join(ours.pack_command(*command)) == b"".join(theirs.pack_command(*command))
    batch = [command, ("PING",), command]
    assert b"".join(ours.pack_commands(batch)) == b"".join(theirs.pack_commands(batch))


@pytest.mark.parametrize(
    "bad", [True, None, object(), {"a": 1}], ids=["bool", "none", "object", "dict"]
)
def test_same_error_as_redis_py(bad: Any) -> None:
    ours: Any = ClippedConnection()
    with pytest.raises(redis.DataError) as caught:
        ours.pack_command("SET", "k", bad)
    with pytest.raises(redis.DataError) as expected:
        Connection().pack_command("SET", "k", bad)
    assert str(caught.value) == str(expected.value)
