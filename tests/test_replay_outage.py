"""Replay rides out Redis outages (issue 10, item 1) without folding anything twice.

The fold's writes are not idempotent (skill counters are HINCRBYs), so a retry that sent
a batch again would count it twice; these tests make the worst cases happen for real:
a batch that ran on the server but whose reply never came back, and a redis-server
SIGKILLed and restarted (AOF) in the middle of the fold. Either way the replay must end
with the new version equal to a clean fold of the logs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from memstream.producers import Producer, Settings
from memstream.producers.connection import sync_client
from memstream.producers.events import SkillExecuted
from memstream.producers.events_messages import MessageAppended
from memstream.producers.keys import REPLAY_LOCK
from memstream.workers.deploy import init
from memstream.workers.outage import OutageRetry, OutageTooLongError
from memstream.workers.replay import read_deployment, replay_all
from memstream.workers.replay_owner import replay_owner
from tests.proxy import DroppingProxy
from tests.redis_server import RedisServer
from tests.test_replay import OWNERS, drained, expected, no_version_left, snapshot
from tests.workers_util import spawn_worker, stop_worker, wait_until


def _seed(url: str, n: int) -> None:
    """Messages and skill runs: the runs fold to counters, which a double fold breaks."""
    items: list[Any] = []
    for i in range(n):
        owner = OWNERS[i % len(OWNERS)]
        if i % 3 == 0:
            items.append((owner, SkillExecuted(name=f"k{i % 4}", success=i % 2 == 0)))
        else:
            items.append((owner, MessageAppended(role="user", content=f"m{i}"), "s"))
    with Producer.from_url(url) as producer:
        for start in range(0, n, 500):
            producer.append_many(items[start : start + 500])


@pytest.fixture
def aof(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", "--appendonly", "yes", "--appendfsync", "always")
    with redis.Redis(port=server.port) as client:
        init(client, partitions=16)
    yield server
    server.stop()


@pytest.fixture
def worker(aof: RedisServer, tmp_path: Path) -> Iterator[None]:
    proc = spawn_worker(aof.url, "w1", log=tmp_path / "worker.log")
    yield
    assert proc.poll() is None, (tmp_path / "worker.log").read_text()[-2000:]
    stop_worker(proc)


class KillingClient(redis.Redis):
    """Kills the server just before the ``nth`` ``ms_write`` and restarts it ``down_s``
    later: a real outage in the middle of the fold, at a point the test chooses."""

    def __init__(self, server: RedisServer, nth: int, down_s: float, **kw: Any) -> None:
        # No driver retries, as the CLI's client (producers/connection.py): retrying is
        # replay's job, and a blind driver retry of a write is what this file rules out.
        super().__init__(port=server.port, retry=Retry(NoBackoff(), 0), **kw)
        self.server, self.nth, self.down_s, self.writes = server, nth, down_s, 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        if args[:2] == ("FCALL", "ms_write"):
            self.writes += 1
            if self.writes == self.nth:
                self.server.kill()
                threading.Timer(self.down_s, self.server.restart).start()
        return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]


@pytest.mark.timeout(120)
def test_replay_survives_a_redis_kill_mid_fold(
    aof: RedisServer, worker: None, caplog: pytest.LogCaptureFixture
) -> None:
    _seed(aof.url, 3000)
    r = redis.Redis(port=aof.port)
    wait_until(lambda: drained(r, 1), 60, "v1 to drain")
    client = KillingClient(aof, nth=3, down_s=1.0, socket_timeout=5)
    with caplog.at_level(logging.INFO, logger="memstream.replay"):
        summary = replay_all(client, Settings.from_url(aof.url), grace_s=0.2,
                             catchup_timeout_s=60)  # fmt: skip
    assert client.writes > 3, "the kill never happened: the fold was too small"
    assert (summary.from_version, summary.to_version) == (1, 2)
    assert read_deployment(r).version == 2
    wait_until(lambda: drained(r, 2), 60, "v2 to drain")
    assert snapshot(r, 2) == expected(r)
    assert no_version_left(r, 1) and no_version_left(r, 3)
    assert not r.exists(REPLAY_LOCK)
    warnings = [rec for rec in caplog.records if rec.levelno == logging.WARNING]
    assert len(warnings) == 1, [rec.getMessage() for rec in warnings]
    assert "retry 1" in warnings[0].getMessage()


@pytest.mark.timeout(120)
def test_replay_whose_write_reply_was_lost_folds_nothing_twice(
    aof: RedisServer, worker: None
) -> None:
    _seed(aof.url, 2000)
    r = redis.Redis(port=aof.port)
    wait_until(lambda: drained(r, 1), 60, "v1 to drain")
    proxy = DroppingProxy(aof.port)
    proxy.arm(b"ms_write")  # the first batch runs on the server; its reply is dropped
    try:
        with sync_client(Settings.from_url(f"redis://127.0.0.1:{proxy.port}")) as client:
            summary = replay_all(client, Settings.from_url(aof.url), grace_s=0.2,
                                 catchup_timeout_s=60)  # fmt: skip
    finally:
        proxy.close()
    assert proxy.dropped == 1
    assert summary.to_version == 2
    wait_until(lambda: drained(r, 2), 60, "v2 to drain")
    assert snapshot(r, 2) == expected(r)


@pytest.mark.timeout(120)
def test_owner_rebuild_whose_reply_was_lost_is_exact(aof: RedisServer, worker: None) -> None:
    _seed(aof.url, 600)
    r = redis.Redis(port=aof.port)
    wait_until(lambda: drained(r, 1), 60, "v1 to drain")
    owner = OWNERS[3]
    want = snapshot(r, 1, owner)
    proxy = DroppingProxy(aof.port)
    proxy.arm(b"ms_rebuild_owner")
    try:
        with sync_client(Settings.from_url(f"redis://127.0.0.1:{proxy.port}")) as client:
            summary = replay_owner(client, owner, Settings.from_url(aof.url))
    finally:
        proxy.close()
    assert proxy.dropped == 1 and summary.owner == owner
    assert snapshot(r, 1, owner) == want


def test_outage_retry_gives_up_after_its_limit_and_raises_other_errors_at_once() -> None:
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    # Real sleeps: the limit bounds the outage's wall time, tries and waits together.
    retry = OutageRetry(logging.getLogger("test"), "trying", limit_s=1.0, sleep=sleep)

    def down() -> None:
        time.sleep(0.2)
        raise redis.ConnectionError("refused")

    started = time.monotonic()
    with pytest.raises(OutageTooLongError, match="did not come back within 1s"):
        retry.run(down)
    # It never sleeps past the limit: it gives up once the next wait would cross it.
    assert slept and time.monotonic() - started < 1.0 + 0.2 + 0.1  # + the last try
    with pytest.raises(ValueError):
        retry.run(lambda: int("x"))
    calls: list[int] = []

    def flaky() -> int:
        calls.append(1)
        if len(calls) < 3:
            raise redis.TimeoutError("slow")
        return 7

    fresh = OutageRetry(logging.getLogger("test"), "trying", limit_s=1.0, sleep=slept.append)
    assert fresh.run(flaky) == 7 and len(calls) == 3 and fresh.outages == 1
