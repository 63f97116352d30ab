from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from memstream.workers.deploy import init
from tests.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(Path(tmp_path_factory.mktemp("redis")))
    yield server
    server.stop()


@pytest.fixture
def r(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A clean database for each test (data and functions flushed)."""
    client = redis.Redis(port=redis_server.port)
    client.flushall()
    client.function_flush()
    yield client
    client.close()


@pytest.fixture
def redis_url(redis_server: RedisServer, r: redis.Redis) -> str:
    return redis_server.url


@pytest.fixture
def deployed(r: redis.Redis, redis_url: str) -> str:
    """An initialised deployment with the default 16 partitions; returns its URL."""
    init(r, partitions=16)
    return redis_url
