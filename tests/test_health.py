"""``memstream health`` and the worker's heartbeat (issue 10, item 6)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import redis

from memstream.producers import Producer, Settings, keys
from memstream.producers.driver import address
from memstream.producers.events_messages import MessageAppended
from memstream.workers import health
from memstream.workers.cli import main
from tests.redis_server import free_port
from tests.workers_util import running_worker, spawn_worker, stop_worker, wait_until


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


def test_worker_logs_json_lines_with_its_start_up_line(deployed: str, tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    # The default user has nopass here: any password works, and must never be logged.
    url = deployed.replace("redis://", "redis://default:pw-secret@")
    proc = spawn_worker(url, "w-json", "--log-format", "json", "--log-level", "debug",
                        log=log)  # fmt: skip
    try:
        wait_until(lambda: "started" in log.read_text(), 30, "the start-up line")
    finally:
        assert stop_worker(proc) == 0
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    started = [x for x in lines if "started" in x["message"]]
    assert started and started[0]["level"] == "info"
    message = started[0]["message"]
    assert "w-json" in message and "partitions=16" in message and "version=v1" in message
    assert f"redis={address(Settings.from_url(url))}" in message
    assert "pw-secret" not in log.read_text()
    assert any(x["message"].startswith("worker w-json stopped") for x in lines)
