"""``memstream health`` and the worker's heartbeat (issue 10, item 6)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis

from memstream.producers import Producer, keys
from memstream.producers.events import MessageAppended
from memstream.workers import health
from memstream.workers.cli import main
from tests.redis_server import free_port
from tests.workers_util import running_worker


def _health(
    url: str, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = main(["health", "--redis-url", url, "--json", *extra])
    out = capsys.readouterr()
    assert out.out, out.err
    return code, json.loads(out.out)


async def test_health_codes(
    deployed: str, r: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = _health(deployed, capsys)
    assert (code, report["healthy"]) == (health.NO_CONSUMER, False)
    assert "no live worker" in report["reason"]
    async with running_worker(deployed) as worker:
        for _ in range(100):  # the first heartbeat follows the start
            if r.exists(keys.heartbeat(worker.options.consumer)):
                break
            await asyncio.sleep(0.05)
        code, report = _health(deployed, capsys)
        assert code == health.OK, report
        assert report["consumers"] == ["w1"]
        ttl = r.pttl(keys.heartbeat("w1"))
        assert 0 < ttl <= 15_000
    # Stopping removes the heartbeat at once.
    assert not r.exists(keys.heartbeat("w1"))
    # Lag over the threshold, with no worker: NO_CONSUMER comes first.
    with Producer.from_url(deployed) as producer:
        producer.append_many([("alice", MessageAppended(role="user", content="x"), "s")] * 5)
    r.zadd(keys.WORKERS, {"fake": 2**50})
    r.set(keys.heartbeat("fake"), json.dumps({"consumer": "fake", "beat_ms": 0}))
    code, report = _health(deployed, capsys, "--max-lag", "3")
    assert (code, report["lag"]) == (health.LAGGING, 5)
    code, _ = _health(deployed, capsys, "--max-lag", "5")
    assert code == health.OK
    # A missing group, then missing functions.
    r.xgroup_destroy(keys.feed(keys.partition("alice", 16)), "v1")
    code, report = _health(deployed, capsys)
    assert code == health.GROUPS_MISSING and "v1" in report["reason"]
    r.function_delete("memstream_fetch")
    code, report = _health(deployed, capsys)
    assert code == health.NOT_INITIALISED and "memstream_fetch" in report["reason"]
    r.flushall()
    code, report = _health(deployed, capsys)
    assert code == health.NOT_INITIALISED and "ms:meta" in report["reason"]


def test_health_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = _health(f"redis://127.0.0.1:{free_port()}/0", capsys, "--timeout", "0.5")
    assert code == health.UNREACHABLE and "did not answer" in report["reason"]
