"""``memstream stats OWNER``: exact entries and TTLs per memory type, sampled bytes."""

from __future__ import annotations

import json

import pytest
import redis

from memstream.producers import AsyncProducer
from memstream.projections.reader import AsyncReader
from memstream.workers.cli import main
from memstream.workers.stats_owner import owner_stats
from tests.workers_util import running_worker


async def test_stats_per_memory_type(
    deployed: str, r: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    async with (
        AsyncProducer.from_url(deployed) as producer,
        AsyncReader.from_url(deployed) as reader,
        running_worker(deployed, settings={"history_ttl_s": 600}),
    ):
        for i in range(7):
            await producer.append_message("alice", "s1", "user", f"m{i}")
        for i in range(3):
            await producer.append_message("alice", "s2", "user", f"n{i}")
        await producer.save_state("alice", {"a": 1})
        await producer.append_message("alice2", "s1", "user", "not alice's")  # glob over-match
        last = await producer.record_step("alice", "look", session="s1")
        await reader.wait(last, timeout=10)

    stats = owner_stats(r, "alice", sample=1)
    types = stats["types"]
    assert types["history"]["keys"] == 2 and types["history"]["entries"] == 10
    assert not types["history"]["bytes_exact"] and types["history"]["bytes"] > 0
    assert 590 < types["history"]["ttl_s"]["min"] <= types["history"]["ttl_s"]["max"] <= 600
    assert types["working"]["entries"] == 1 and 3500 < types["working"]["ttl_s"]["max"] <= 3600
    assert types["state"] == {**types["state"], "keys": 1, "entries": 1, "ttl_s": None}
    assert types["log"]["entries"] == 12
    assert stats["total"]["entries"] == sum(t["entries"] for t in types.values())

    assert main(["stats", "alice", "--json", "--redis-url", deployed]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["types"]["history"]["entries"] == 10 and shown["types"]["history"]["bytes_exact"]
    assert main(["stats", "alice", "--redis-url", deployed]) == 0
    assert "history" in capsys.readouterr().out
    assert main(["stats", "no/such", "--redis-url", deployed]) == 1
