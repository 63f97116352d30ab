"""Chaos with the outbox on: Redis shut down and restarted on the same port while a
producer appends in a loop. Zero appends lost, zero duplicated, per-owner order kept.

The short run (5 s down) is in ``make test``; the 30 s one is ``slow``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import redis

from memstream.producers import Producer
from memstream.workers.deploy import init
from tests.redis_server import RedisServer
from tests.test_outbox import PARTITIONS, contents, drained

OWNERS = ("ann", "bob", "cat", "dan")


def _chaos(tmp_path: Path, down_s: float, *, kill: bool = False) -> dict[str, float]:
    server = RedisServer(tmp_path / "redis", "--appendonly", "yes", "--appendfsync", "always")
    init(redis.Redis(port=server.port), partitions=PARTITIONS)
    path = tmp_path / "outbox.db"
    sent: dict[str, list[str]] = {o: [] for o in OWNERS}
    pending = [0]
    stop = threading.Event()

    def produce(producer: Producer) -> None:
        i = 0
        while not stop.is_set():
            owner = OWNERS[i % len(OWNERS)]
            receipt = producer.append_message(owner, "s1", "user", str(i))
            sent[owner].append(str(i))  # returned: acknowledged (stored in Redis or on disk)
            pending[0] += receipt.pending
            i += 1
            time.sleep(0.001)

    try:
        with Producer.from_url(server.url, outbox=str(path), append_deadline_s=1.0) as producer:
            loop = threading.Thread(target=produce, args=(producer,))
            loop.start()
            time.sleep(0.5)
            if kill:  # no goodbye: what appendfsync always wrote is all there is
                server.proc.kill()
                server.proc.wait()
            else:
                server.stop()  # SIGTERM: SHUTDOWN, AOF synced
            time.sleep(down_s)
            server.start()
            restarted = time.monotonic()
            drained(path, timeout=30)  # caught up, while the loop keeps appending
            recovery = time.monotonic() - restarted
            time.sleep(0.5)
            stop.set()
            loop.join(timeout=30)
            drained(path, timeout=30)
        tried = sum(len(v) for v in sent.values())
        stored = {o: contents(server, o) for o in OWNERS}
    finally:
        server.stop()
    for owner in OWNERS:
        assert stored[owner] == sent[owner], owner  # nothing lost, nothing twice, in order
    assert pending[0] > 0, "the outage never reached the producer"
    return {"tried": tried, "pending": pending[0], "recovery_s": recovery}


def test_redis_shut_down_for_5s_with_the_outbox(tmp_path: Path) -> None:
    figures = _chaos(tmp_path, 5.0)
    print(f"outbox chaos (5 s down): {figures}")


def test_redis_sigkilled_for_2s_with_the_outbox(tmp_path: Path) -> None:
    figures = _chaos(tmp_path, 2.0, kill=True)
    print(f"outbox chaos (SIGKILL, 2 s down): {figures}")


@pytest.mark.slow
def test_redis_shut_down_for_30s_with_the_outbox(tmp_path: Path) -> None:
    figures = _chaos(tmp_path, 30.0)
    print(f"outbox chaos (30 s down): {figures}")
