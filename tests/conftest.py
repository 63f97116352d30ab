from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from memstream.workers.deploy import init
from tests.redis_cluster import RedisClusterNodes
from tests.redis_server import RedisServer

TOPOLOGIES = ("single", "cluster")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "topologies: run the test on one node and on a three-primary Cluster"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked ``topologies`` run once per topology (the ``topology`` fixture)."""
    if metafunc.definition.get_closest_marker("topologies") and (
        "topology" in metafunc.fixturenames
    ):
        metafunc.parametrize("topology", TOPOLOGIES, indirect=True)


@pytest.fixture
def topology(request: pytest.FixtureRequest) -> str:
    """``single`` unless the test is marked ``topologies``."""
    return str(getattr(request, "param", "single"))


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    """Three primaries, no replicas, started once for the session."""
    cluster = RedisClusterNodes(Path(tmp_path_factory.mktemp("cluster")))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(Path(tmp_path_factory.mktemp("redis")))
    yield server
    server.stop()


@pytest.fixture
def r(request: pytest.FixtureRequest, topology: str) -> Iterator[redis.Redis]:
    """A clean database for each test (data and functions flushed); on the ``cluster``
    topology a cluster client (typed as ``redis.Redis``: it serves the same commands)."""
    if topology == "cluster":
        cluster: RedisClusterNodes = request.getfixturevalue("redis_cluster")
        cluster.flush()
        cc = cluster.client()
        yield cc
        cc.close()
        return
    redis_server: RedisServer = request.getfixturevalue("redis_server")
    client = redis.Redis(port=redis_server.port)
    client.flushall()
    client.function_flush()
    yield client
    client.close()


@pytest.fixture
def redis_url(request: pytest.FixtureRequest, topology: str, r: redis.Redis) -> str:
    """The URL of the test's topology (``redis+cluster://`` on the cluster)."""
    name = "redis_cluster" if topology == "cluster" else "redis_server"
    return str(request.getfixturevalue(name).url)


@pytest.fixture
def deployed(r: redis.Redis, redis_url: str) -> str:
    """An initialised deployment with the default 16 partitions; returns its URL."""
    init(r, partitions=16)
    return redis_url
