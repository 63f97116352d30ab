"""``memstream status``: lag, pending, consumers, DLQ and counters as Redis sees them."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import pytest
import redis
from rich.console import Console

from memstream.producers import Producer, Settings, keys
from memstream.projections.reader import AsyncReader
from memstream.workers import health
from memstream.workers.cli import main
from memstream.workers.replay import replay_all
from memstream.workers.status import exit_code, gather, render
from tests.workers_util import running_worker

ALICE, BOB = "alice", "bob"
PA, PB = keys.partition(ALICE, 16), keys.partition(BOB, 16)


def _part(status: dict[str, Any], p: int) -> dict[str, Any]:
    part: dict[str, Any] = status["partitions"][p]
    assert part["partition"] == p
    return part


def _v1(status: dict[str, Any], p: int) -> dict[str, Any]:
    group: dict[str, Any]
    (group,) = _part(status, p)["groups"]
    assert group["group"] == "v1"
    return group


def test_lag_and_pending_without_a_worker(deployed: str, r: redis.Redis) -> None:
    assert PA != PB
    with Producer.from_url(deployed) as producer:
        for i in range(3):
            producer.append_message(ALICE, "s1", "user", f"m{i}")
        producer.save_state(BOB, {"x": 1})
        producer.save_state(BOB, {"x": 2})

    status = gather(r)
    assert status["deployment"] == {
        "partitions": 16, "version": 1, "next_version": None, "format": 1,
        "max_event_bytes": 1048576,
    }  # fmt: skip
    assert status["redis"]["version"].startswith("7.")
    assert status["redis"]["used_memory_human"]
    assert _part(status, PA)["feed_length"] == 3
    assert _v1(status, PA) | {"last_delivered_id": None} == {
        "group": "v1", "version": 1, "role": "active", "last_delivered_id": None, "lag": 3,
        "lag_exact": True, "pending": 0, "consumers": [], "unknown": 0, "dlq": 0,
    }  # fmt: skip
    assert _v1(status, PB)["lag"] == 2
    assert status["totals"]["feed_length"] == 5
    assert status["totals"]["groups"]["v1"]["lag"] == 5
    assert status["consumers"] == []

    # A consumer that reads without acking: delivered, so no longer lag, but pending.
    r.xreadgroup("v1", "c1", {keys.feed(PA): ">"}, count=2)
    status = gather(r)
    group = _v1(status, PA)
    assert (group["lag"], group["pending"]) == (1, 2)
    assert [c["name"] for c in group["consumers"]] == ["c1"]
    assert group["consumers"][0]["pending"] == 2
    assert status["totals"]["groups"]["v1"] | {"consumers": 0} == {
        "lag": 3, "lag_exact": True, "pending": 2, "unknown": 0, "dlq": 0, "consumers": 0,
        "partitions": 16,
    }  # fmt: skip
    (consumer,) = status["consumers"]
    assert consumer | {"idle_ms": 0} == {
        "group": "v1",
        "name": "c1",
        "partitions": 1,
        "pending": 2,
        "idle_ms": 0,
    }


def test_lag_is_counted_when_redis_cannot_tell(deployed: str, r: redis.Redis) -> None:
    with Producer.from_url(deployed) as producer:
        receipts = [producer.append_message(ALICE, "s1", "user", f"m{i}") for i in range(5)]
    r.xreadgroup("v1", "c1", {keys.feed(PA): ">"}, count=1)
    # Deleting an undelivered entry makes Redis report the lag as nil.
    r.xdel(keys.feed(PA), receipts[2].feed_id)
    assert r.xinfo_groups(keys.feed(PA))[0]["lag"] is None
    group = _v1(gather(r), PA)
    assert (group["lag"], group["lag_exact"], group["pending"]) == (3, True, 1)


async def test_counters_after_a_worker_ran(deployed: str, r: redis.Redis) -> None:
    with Producer.from_url(deployed) as producer:
        producer.append_message(ALICE, "s1", "user", "hello")
        r.fcall("ms_append", 2, keys.log(PA, ALICE), keys.feed(PA),
                "type", "robot.moved", "data", "{}", "ct", "json")  # fmt: skip
        r.xadd(keys.feed(PA), {"o": ALICE, "l": "1-0"})  # its log entry does not exist
        last = producer.append_message(ALICE, "s1", "user", "bye")
    async with running_worker(deployed, "w1"), AsyncReader.from_url(deployed) as reader:
        assert (await reader.wait(last, timeout=10)).applied
        status = gather(r)
    group = _v1(status, PA)
    assert (group["lag"], group["pending"], group["unknown"], group["dlq"]) == (0, 0, 1, 1)
    assert [c["name"] for c in group["consumers"]] == ["w1"]
    assert _part(status, PA)["dlq_length"] == 1
    assert status["totals"]["dlq_length"] == 1
    assert status["totals"]["groups"]["v1"]["unknown"] == 1


def test_replay_in_progress_shows_next_version(deployed: str, r: redis.Redis) -> None:
    r.hset(keys.META, "next_version", 2)
    r.xgroup_create(keys.feed(PA), "v2", id="$")
    with Producer.from_url(deployed) as producer:
        producer.save_state(ALICE, {"x": 1})
    status = gather(r)
    assert status["deployment"]["next_version"] == 2
    roles = {g["group"]: g["role"] for g in _part(status, PA)["groups"]}
    assert roles == {"v1": "active", "v2": "next"}
    assert _part(status, PA)["missing_groups"] == []
    assert _part(status, PB)["missing_groups"] == ["v2"]
    text = _rendered(status)
    assert "replay in progress: building v2" in text
    assert "v2 (next)" in text
    others = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in _spans_without(PA))
    assert f"group v2 is missing on partition(s) {others}" in text
    lags = {g["group"]: g["lag"] for g in _part(status, PA)["groups"]}
    assert lags == {"v1": 1, "v2": 1}
    assert status["totals"]["groups"]["v2"]["partitions"] == 1


def _spans_without(p: int) -> list[tuple[int, int]]:
    spans = [(0, p - 1)] if p > 0 else []
    return spans + ([(p + 1, 15)] if p < 15 else [])


def _rendered(status: dict[str, Any]) -> str:
    out = io.StringIO()
    render(status, Console(file=out, width=80, color_system=None))
    return out.getvalue()


def test_table_fits_80_columns_and_folds_idle_partitions(deployed: str, r: redis.Redis) -> None:
    with Producer.from_url(deployed) as producer:
        producer.append_message(ALICE, "s1", "user", "hello")
    r.xreadgroup("v1", "reader-with-a-long-name", {keys.feed(PA): ">"})
    text = _rendered(gather(r))
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "Partitions (1 of 16 busy)" in text
    assert "reader-with-a-long-name" in text
    rows = [line.split() for line in text.splitlines()]
    assert [str(PA), "v1", "1", "0", "1", "1", "0", "0", "0"] in rows
    assert ["all", "v1", "1", "0", "1", "1", "0", "0", "0"] in rows


def test_cli_prints_json_and_table(deployed: str, capsys: pytest.CaptureFixture[str]) -> None:
    with Producer.from_url(deployed) as producer:
        producer.save_state(BOB, {"x": 1})
    # No worker runs: the documented exit code says so, with the data still printed.
    assert main(["status", "--json", "--redis-url", deployed]) == health.NO_CONSUMER
    doc = json.loads(capsys.readouterr().out)
    assert doc["totals"]["groups"]["v1"]["lag"] == 1
    assert len(doc["partitions"]) == 16
    assert doc["workers"] == [] and doc["tensor_problems"] == {}
    assert main(["status", "--redis-url", deployed]) == health.NO_CONSUMER
    out = capsys.readouterr().out
    assert "Partitions (1 of 16 busy)" in out
    assert "no live worker" in out


async def _beating(r: redis.Redis, name: str) -> None:
    for _ in range(200):  # the first heartbeat follows the start
        if r.exists(keys.heartbeat(name)):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no heartbeat from {name}")


async def test_exit_codes_dlq_and_tensor_problems(
    deployed: str, r: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_worker(deployed, "w1"):
        await _beating(r, "w1")
        capsys.readouterr()
        assert main(["status", "--redis-url", deployed]) == health.OK
        assert "w1" in capsys.readouterr().out
        r.xadd(keys.dlq(PA), {"reason": "test"})
        r.hset(keys.TENSOR_PROBLEMS, "m2", "dims 3 differ from 4")
        assert main(["status", "--json", "--redis-url", deployed]) == health.DLQ_NOT_EMPTY
        doc = json.loads(capsys.readouterr().out)
        assert doc["tensor_problems"] == {"m2": "dims 3 differ from 4"}
        assert [w["consumer"] for w in doc["workers"]] == ["w1"]
        assert main(["status", "--redis-url", deployed]) == health.DLQ_NOT_EMPTY
        out = capsys.readouterr().out
        assert "tensor model m2: dims 3 differ from 4" in out
        assert "1 entry in the DLQ" in out


async def test_running_worker_is_listed_right_after_a_replay_flip(
    deployed: str, r: redis.Redis
) -> None:
    with Producer.from_url(deployed) as producer:
        last = producer.append_message(ALICE, "s1", "user", "hello")
    async with running_worker(deployed, "w1"), AsyncReader.from_url(deployed) as reader:
        assert (await reader.wait(last, timeout=10)).applied
        await _beating(r, "w1")
        summary = await asyncio.to_thread(replay_all, r, Settings(), grace_s=0.05)
        assert summary.to_version == 2
        status = gather(r)
        assert status["deployment"]["version"] == 2
        assert [w["consumer"] for w in status["workers"]] == ["w1"]
        assert exit_code(status) == health.OK
        text = _rendered(status)
        assert "no live worker" not in text and "w1" in text
