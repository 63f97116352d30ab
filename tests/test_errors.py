"""The driver boundary: what a producer or reader user sees when Redis misbehaves.

Every failure is a MemstreamError with the address (never the password), and every call
is bounded: the time bound against a frozen Redis is a correctness property here.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from memstream.producers import (
    AsyncProducer,
    MemstreamError,
    Producer,
    Settings,
    keys,
)
from memstream.producers.errors import (
    AuthenticationError,
    ConfigError,
    InvalidInputError,
    PermissionDeniedError,
    RedisTimeoutError,
    RedisUnavailableError,
)
from memstream.projections.reader import AsyncReader, Reader
from memstream.workers.deploy import init
from tests.redis_server import RedisServer, free_port

DEADLINE = 1.0
SLACK = 1.0
"""Scheduling slack on a shared 2-core machine; the bound itself is DEADLINE."""


@pytest.fixture
def private(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of the test's own, so that freezing it disturbs no other test."""
    server = RedisServer(tmp_path / "redis")
    init(redis.Redis(port=server.port), partitions=4)
    yield server
    if server.proc.poll() is None:
        os.kill(server.proc.pid, signal.SIGCONT)
    server.stop()


@pytest.fixture
def frozen(private: RedisServer) -> Iterator[RedisServer]:
    os.kill(private.proc.pid, signal.SIGSTOP)
    yield private
    os.kill(private.proc.pid, signal.SIGCONT)


def test_unreachable_port_names_the_address() -> None:
    port = free_port()  # nothing listens there
    producer = Producer.from_url(f"redis://127.0.0.1:{port}/0", append_deadline_s=DEADLINE)
    started = time.monotonic()
    with producer, pytest.raises(RedisUnavailableError, match=f"127.0.0.1:{port}") as info:
        producer.append_message("alice", "s1", "user", "hi")
    assert time.monotonic() - started < DEADLINE + SLACK
    assert info.value.address == f"127.0.0.1:{port}"
    assert not isinstance(info.value, redis.RedisError)


def test_unreachable_reader_is_ours_too() -> None:
    port = free_port()
    settings = Settings.from_url(f"redis://127.0.0.1:{port}/0", read_deadline_s=DEADLINE)
    with Reader(settings) as rd, pytest.raises(RedisUnavailableError, match=f"127.0.0.1:{port}"):
        rd.state("alice")


def test_wrong_password_names_the_user_not_the_password(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "auth", "--requirepass", "right-one")
    try:
        admin = redis.Redis(port=server.port, password="right-one")
        init(admin, partitions=4)
        admin.acl_setuser(
            "agent", enabled=True, passwords=["+s3cret"], keys=["ms:*"], commands=["+@all"]
        )
        url = f"redis://127.0.0.1:{server.port}/0"
        bad = Producer.from_url(url, password="wrong-one")
        with bad, pytest.raises(AuthenticationError, match="default user") as info:
            bad.append_message("alice", "s1", "user", "hi")
        assert "wrong-one" not in str(info.value) and "right-one" not in str(info.value)

        in_url = f"redis://agent:not-it@127.0.0.1:{server.port}/0"
        with Producer.from_url(in_url) as bad:
            with pytest.raises(AuthenticationError, match="'agent'") as info:
                bad.append_message("alice", "s1", "user", "hi")
            assert "not-it" not in repr(bad.settings) and "not-it" not in str(bad.settings)
        assert "not-it" not in str(info.value)

        # The right password in the URL works, and still never shows.
        with Producer.from_url(f"redis://agent:s3cret@127.0.0.1:{server.port}/0") as good:
            assert good.append_message("alice", "s1", "user", "hi").log_id
            assert "s3cret" not in repr(good.settings)
        reader = Reader(Settings.from_url(url, password="wrong-one"))
        with reader, pytest.raises(AuthenticationError):
            reader.state("alice")
        admin.close()
    finally:
        server.stop()


def test_acl_user_without_permission(deployed: str, r: redis.Redis) -> None:
    # May read the deployment but not call functions, nor read projections.
    r.acl_setuser(
        "viewer", enabled=True, passwords=["+pw"], keys=["ms:meta", "ms:*:conf"],
        commands=["+hgetall", "+hget", "+ping", "+client"],
    )  # fmt: skip
    try:
        producer = Producer.from_url(deployed, username="viewer", password="pw")
        with producer, pytest.raises(PermissionDeniedError, match="'viewer'"):
            producer.append_message("alice", "s1", "user", "hi")
        reader = Reader(Settings.from_url(deployed, username="viewer", password="pw"))
        with reader, pytest.raises(PermissionDeniedError):
            reader.history("alice", "s1")
    finally:
        r.acl_deluser("viewer")


def test_frozen_redis_times_out_within_the_deadline(frozen: RedisServer) -> None:
    producer = Producer.from_url(frozen.url, append_deadline_s=DEADLINE)
    started = time.monotonic()
    with producer, pytest.raises(RedisTimeoutError):
        producer.append_message("alice", "s1", "user", "hi")
    took = time.monotonic() - started
    assert took < DEADLINE + SLACK, took


def test_frozen_redis_times_out_an_established_connection(private: RedisServer) -> None:
    with Producer.from_url(private.url, append_deadline_s=DEADLINE) as producer:
        producer.append_message("alice", "s1", "user", "hi")  # connected, meta read
        os.kill(private.proc.pid, signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(RedisTimeoutError, match="did not answer"):
            producer.append_message("alice", "s1", "user", "again")
        assert time.monotonic() - started < DEADLINE + SLACK


async def test_frozen_redis_async_producer_and_reader(frozen: RedisServer) -> None:
    producer = AsyncProducer.from_url(frozen.url, append_deadline_s=DEADLINE)
    started = time.monotonic()
    with pytest.raises(RedisTimeoutError):
        await producer.append_message("alice", "s1", "user", "hi")
    assert time.monotonic() - started < DEADLINE + SLACK
    reader = AsyncReader.from_settings(Settings.from_url(frozen.url, read_deadline_s=DEADLINE))
    started = time.monotonic()
    with pytest.raises(RedisTimeoutError):
        await reader.state("alice")
    assert time.monotonic() - started < DEADLINE + SLACK
    os.kill(frozen.proc.pid, signal.SIGCONT)
    await asyncio.wait_for(producer.aclose(), 5)
    await asyncio.wait_for(reader.aclose(), 5)


def test_frozen_redis_sync_reader(frozen: RedisServer) -> None:
    with Reader(Settings.from_url(frozen.url, read_deadline_s=DEADLINE)) as rd:
        started = time.monotonic()
        with pytest.raises(RedisTimeoutError):
            rd.sessions("alice")
        assert time.monotonic() - started < DEADLINE + SLACK
        os.kill(frozen.proc.pid, signal.SIGCONT)


def test_default_deadlines_are_bounded() -> None:
    s = Settings()
    assert s.append_deadline_s <= 10 and s.read_deadline_s <= 10
    assert s.socket_timeout <= s.append_deadline_s and s.connect_timeout <= s.append_deadline_s


def test_bad_input_from_public_apis_is_ours(deployed: str) -> None:
    with pytest.raises(ConfigError, match="append_deadline_s"):
        Producer.from_url(deployed, append_deadline_s=0)
    with pytest.raises(ConfigError, match="no_such_option"):
        Producer.from_url(deployed, no_such_option=1)
    with pytest.raises(ConfigError, match="redis_url"):
        Producer.from_url("redis://127.0.0.1:notaport/0")
    with pytest.raises(ConfigError, match="redis_url"):
        Reader.from_url("http://nope")
    with Producer.from_url(deployed) as producer:
        with pytest.raises(InvalidInputError, match="role"):
            producer.append_message("alice", "s1", 42, "hi")
        with pytest.raises(InvalidInputError, match="owner"):
            producer.append_message("no spaces", "s1", "user", "hi")
    assert issubclass(ConfigError, MemstreamError) and issubclass(InvalidInputError, MemstreamError)


def test_an_append_rides_out_a_short_restart(tmp_path: Path) -> None:
    import threading

    server = RedisServer(tmp_path / "redis", "--appendonly", "yes", "--appendfsync", "always")
    try:
        init(redis.Redis(port=server.port), partitions=4)
        with Producer.from_url(server.url, append_deadline_s=5.0) as producer:
            producer.append_message("alice", "s1", "user", "before")
            server.stop()
            restart = threading.Timer(1.0, server.start)
            restart.start()
            started = time.monotonic()
            receipt = producer.append_message("alice", "s1", "user", "during")
            took = time.monotonic() - started
            restart.join()
        assert receipt.log_id and 0.9 < took < 5.0 + SLACK
        log = redis.Redis(port=server.port).xrange(keys.log(receipt.partition, "alice"))
        assert len(log) == 2
    finally:
        server.stop()
