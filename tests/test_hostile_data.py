"""Hostile data outside the gate (issue 11): readers of raw entries never die on deep
nesting, forget selects by the owner field, dead consumers are reaped, and forgotten data
can be compacted out of the append-only file."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from memstream.producers import Producer, keys
from memstream.producers.codec import DecodeError, decode
from memstream.producers.settings import Settings
from memstream.projections.reader import AsyncReader
from memstream.workers.cli import main
from memstream.workers.deploy import init
from memstream.workers.replay import replay_all
from memstream.workers.replay_owner import replay_owner
from memstream.workers.tail import tail
from memstream.workers.trim import trim_feed
from tests.redis_server import RedisServer
from tests.workers_util import running_worker

OWNER = "agent.deep"
P = keys.partition(OWNER, 16)
DEPTH = 100_000


def _deep_entries(r: redis.Redis) -> None:
    """What a client that bypasses ms_append can write: deep JSON and deep msgpack."""
    log = keys.log(P, OWNER)
    r.xadd(log, {"type": "state.saved", "v": "1", "ct": "json",
                 "data": b'{"state":' + b"[" * DEPTH + b"]" * DEPTH + b"}"})  # fmt: skip
    r.xadd(log, {"type": "state.saved", "v": "1", "ct": "msgpack",
                 "data": b"\x81\xa5state" + b"\x91" * DEPTH + b"\xc0"})  # fmt: skip


@pytest.mark.parametrize("ct", ["json", "msgpack"])
def test_decode_reports_deep_nesting(ct: str) -> None:
    raw = (b"[" * DEPTH + b"]" * DEPTH) if ct == "json" else (b"\x91" * DEPTH + b"\xc0")
    with pytest.raises(DecodeError) as caught:
        decode(raw, ct)
    assert "nest" in str(caught.value), str(caught.value)


async def test_readers_of_raw_entries_skip_deep_nesting(deployed: str, r: redis.Redis) -> None:
    with Producer.from_url(deployed) as producer:
        producer.save_state(OWNER, {"before": 1})
        _deep_entries(r)
        last = producer.save_state(OWNER, {"after": 2})
    out = io.StringIO()
    assert tail(r, OWNER, out) == 4
    assert out.getvalue().count("undecodable") == 2, out.getvalue()
    summary = replay_owner(r, OWNER)
    assert summary.stats.undecodable == 2
    replay_all(r, Settings.from_url(deployed), catchup_timeout_s=5, grace_s=0.0)
    async with running_worker(deployed), AsyncReader.from_url(deployed) as reader:
        assert (await reader.wait(last, timeout=20)).applied
        assert await reader.state(OWNER) == {"after": 2}


def test_forget_selects_dead_letters_by_owner_field(deployed: str, r: redis.Redis) -> None:
    with Producer.from_url(deployed) as producer:
        producer.save_state("ada", {"x": 1})
    p_ada, p_carol = keys.partition("ada", 16), keys.partition("carol-1", 16)
    mine = r.xadd(keys.dlq(p_ada), {"feed_id": "1-0", "owner": "ada", "log_id": "1-0",
                                    "group": "v1", "deliveries": "1", "reason": "x"})  # fmt: skip
    theirs = r.xadd(keys.dlq(p_carol), {
        "feed_id": "2-0", "owner": "carol-1", "log_id": "2-0", "group": "v1",
        "deliveries": "1", "reason": "data.note: bad value 'ada:x' for state.saved"})  # fmt: skip
    assert main(["forget", "ada", "--yes", "--redis-url", deployed]) == 0
    assert r.xrange(keys.dlq(p_ada), mine, mine) == []
    assert len(r.xrange(keys.dlq(p_carol), theirs, theirs)) == 1


async def test_bad_pointer_dead_letter_names_its_owner_field(deployed: str, r: redis.Redis) -> None:
    other = next(o for o in (f"x{j}" for j in range(100)) if keys.partition(o, 16) != P)
    r.xadd(keys.feed(P), {"o": other, "l": "1-0"})  # in the wrong partition
    with Producer.from_url(deployed) as producer:
        last = producer.save_state(OWNER, {"v": 1})
    async with running_worker(deployed), AsyncReader.from_url(deployed) as reader:
        assert (await reader.wait(last, timeout=20)).applied
    rows: Any = r.xrange(keys.dlq(P))
    ((_, letter),) = rows
    assert letter[b"owner"] == b"" and letter[b"pointer_owner"] == other.encode()
    assert main(["forget", other, "--yes", "--redis-url", deployed]) == 0
    assert r.xlen(keys.dlq(P)) == 0


async def test_trim_reaps_idle_consumers_without_pending(deployed: str, r: redis.Redis) -> None:
    feed = keys.feed(P)
    for i in range(5):
        r.xreadgroup("v1", f"dead-{i}", {feed: ">"}, count=1)
    with Producer.from_url(deployed) as producer:
        producer.save_state(OWNER, {"v": 1})
        producer.save_state(OWNER, {"v": 2})
    r.xreadgroup("v1", "holding", {feed: ">"}, count=1)  # dead, but holds an entry
    time.sleep(0.05)
    read: Any = r.xreadgroup("v1", "fresh", {feed: ">"}, count=1)
    ((_, [(entry_id, _)]),) = read
    r.xack(feed, "v1", entry_id)  # alive (just read) and holds nothing
    client = redis.asyncio.Redis.from_url(deployed)
    try:
        await trim_feed(client, P, consumer_idle_ms=30)
    finally:
        await client.aclose()
    consumers: Any = r.xinfo_consumers(feed, "v1")
    names = {c["name"].decode() for c in consumers}
    assert names == {"holding", "fresh"}


def test_forget_compact_rewrites_the_aof(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "aof", "--appendonly", "yes")
    try:
        client = redis.Redis(port=server.port)
        init(client, partitions=16)
        secret = "the-private-diary-of-ada-" * 4
        with Producer.from_url(server.url) as producer:
            producer.save_state("ada", {"note": secret})
        files = list((tmp_path / "aof").rglob("*.aof"))
        assert any(secret.encode() in f.read_bytes() for f in files)
        assert main(["forget", "ada", "--yes", "--compact", "--redis-url", server.url]) == 0
        deadline = time.monotonic() + 20
        info: Any = client.info("persistence")
        while info["aof_rewrite_in_progress"] or info["aof_rewrite_scheduled"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
            info = client.info("persistence")
        files = list((tmp_path / "aof").rglob("*.aof"))
        assert files and not any(secret.encode() in f.read_bytes() for f in files)
        client.close()
    finally:
        server.stop()
