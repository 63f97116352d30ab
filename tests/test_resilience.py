"""Workers survive Redis going away (issue 10, item 1): real processes, real restarts.

Each test runs its own redis-server with an append-only file (``appendfsync always``),
so a kill or a ``SHUTDOWN NOSAVE`` followed by a restart on the same port and directory
brings the data back, as a production restart would.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from memstream.producers import Producer
from memstream.producers.events_messages import MessageAppended
from memstream.projections.reader import Reader
from memstream.workers.deploy import init
from tests.redis_server import RedisServer
from tests.workers_util import PROBLEMS, spawn_worker, stop_worker, wait_until, warnings_in

OWNERS = [f"agent-{i}" for i in range(20)]


@pytest.fixture
def aof(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", "--appendonly", "yes", "--appendfsync", "always")
    client = redis.Redis(port=server.port)
    init(client, partitions=16)
    client.close()
    yield server
    server.stop()


def _append(url: str, start: int, n: int) -> None:
    with Producer.from_url(url) as producer:
        producer.append_many(
            [(OWNERS[i % len(OWNERS)], MessageAppended(role="user", content=str(i)), "s")
             for i in range(start, start + n)]
        )  # fmt: skip


def _all_applied(url: str, n: int) -> bool:
    with Reader.from_url(url) as reader:
        for k, owner in enumerate(OWNERS):
            want = [str(i) for i in range(k, n, len(OWNERS))]
            got = [m["content"] for m in reader.history(owner, "s", last=1000)]
            if got != want:
                return False
    return True


def _check_log(log: Path, outages: int) -> str:
    text = log.read_text()
    for problem in PROBLEMS:
        assert problem not in text, text[-3000:]
    assert len(warnings_in(text)) <= 2 * outages, warnings_in(text)
    return text


@pytest.mark.timeout(120)
def test_worker_started_while_redis_is_down_waits_then_works(
    aof: RedisServer, tmp_path: Path
) -> None:
    aof.kill()
    log = tmp_path / "worker.log"
    worker = spawn_worker(aof.url, "w-early", log=log)
    try:
        time.sleep(3)
        assert worker.poll() is None, log.read_text()
        aof.restart()
        _append(aof.url, 0, 200)
        wait_until(lambda: _all_applied(aof.url, 200), 60, "the events to be applied")
        assert worker.poll() is None
    finally:
        assert stop_worker(worker) == 0
    text = _check_log(log, outages=1)
    assert "works again after" in text
    assert "started: partitions=16 version=v1" in text


@pytest.mark.timeout(120)
def test_worker_survives_shutdown_nosave_and_restart(aof: RedisServer, tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    worker = spawn_worker(aof.url, "w-steady", log=log)
    try:
        _append(aof.url, 0, 300)
        wait_until(lambda: _all_applied(aof.url, 300), 60, "the first events")
        client = redis.Redis(port=aof.port)
        client.shutdown(nosave=True)
        client.close()
        aof.proc.wait(timeout=10)
        time.sleep(2.5)
        assert worker.poll() is None, log.read_text()
        aof.restart()
        _append(aof.url, 300, 300)
        took = wait_until(lambda: _all_applied(aof.url, 600), 60, "the events after restart")
        print(f"applied 300 events {took:.2f}s after the restart")
        assert worker.poll() is None
    finally:
        assert stop_worker(worker) == 0
    _check_log(log, outages=1)


@pytest.mark.timeout(120)
def test_restart_without_persistence_waits_and_never_recreates_groups(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")  # no AOF, no RDB: a restart loses everything
    init(redis.Redis(port=server.port), partitions=16)
    log = tmp_path / "worker.log"
    worker = spawn_worker(server.url, "w-bare", log=log)
    try:
        _append(server.url, 0, 100)
        wait_until(lambda: _all_applied(server.url, 100), 60, "the first events")
        server.stop()
        server.start()  # empty: no functions, no ms:meta, no feeds, no groups
        client = redis.Redis(port=server.port)
        wait_until(lambda: "Was Redis restarted without persistence" in log.read_text(), 30,
                   "the worker to say what is missing")  # fmt: skip
        time.sleep(1.5)  # several retries later: still alive, still nothing recreated
        assert worker.poll() is None, log.read_text()
        assert client.keys("ms:*") == [] or set(client.keys("ms:*")) <= {
            b"ms:workers",
            b"ms:worker:w-bare",
        }, client.keys("ms:*")
        assert client.function_list() == []
        # The operator re-initialises: the same worker process picks up the new feeds.
        init(client, partitions=16)
        _append(server.url, 0, 100)
        wait_until(lambda: _all_applied(server.url, 100), 60, "the events after init")
        assert worker.poll() is None
        client.close()
    finally:
        assert stop_worker(worker) == 0
        server.stop()
    text = log.read_text()
    for problem in PROBLEMS:
        assert problem not in text, text[-3000:]
    # One for the outage, one for the missing data, one for the missing ms:meta at most.
    assert len(warnings_in(text)) <= 3, warnings_in(text)
