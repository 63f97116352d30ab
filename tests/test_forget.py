"""Forget: nothing that names the owner is left anywhere in the keyspace; in-flight entries,
replay and old versions bring nothing back; a later append starts a fresh log."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import redis

from memstream.producers import AsyncProducer, OwnerForgotten, Producer, keys
from memstream.producers.entry import decode_entry
from memstream.producers.settings import Settings
from memstream.projections.base import ApplyContext
from memstream.projections.ops import apply_command
from memstream.projections.reader import AsyncReader
from memstream.projections.registry import default_projections
from memstream.workers.cli import main
from memstream.workers.forget import forget_requested, owner_hash
from memstream.workers.plan import Planner
from memstream.workers.replay import replay_all
from tests.workers_util import running_worker

MESSAGE_VECTORS: dict[str, object] = {"embed_messages": True}

OWNER = "ada.lovelace"
NEIGHBOUR = "ada.lovelace2"
"""Matches the owner's SCAN glob (``*:ada.lovelace*``): forget must leave it alone."""
_MENTION = re.compile(rb"(?<![A-Za-z0-9._@+=\-])" + re.escape(OWNER.encode()) +
                      rb"(?![A-Za-z0-9._@+=\-])")  # fmt: skip

READS = {
    "string": ("GET",), "hash": ("HGETALL",), "zset": ("ZRANGE", 0, -1, "WITHSCORES"),
    "set": ("SMEMBERS",), "list": ("LRANGE", 0, -1), "stream": ("XRANGE", "-", "+"),
}  # fmt: skip


def keyspace(r: redis.Redis) -> dict[bytes, Any]:
    """Every key with its type and full content (TTL aside)."""
    out: dict[bytes, Any] = {}
    for key in r.scan_iter(count=1000):
        kind = r.type(key).decode()
        command, *args = READS[kind]
        call: Any = r.execute_command
        out[key] = (kind, call(command, key, *args))
    return out


def mentions(r: redis.Redis, owner_re: re.Pattern[bytes] = _MENTION) -> list[str]:
    """Keys whose name or content names the owner, as readable lines."""
    found = []
    for key, (kind, value) in keyspace(r).items():
        if owner_re.search(key) or owner_re.search(repr(value).encode()):
            found.append(f"{key!r} ({kind}): {repr(value)[:200]}")
    return found


def populate(url: str, r: redis.Redis) -> None:
    with Producer.from_url(url) as producer:
        for owner in (OWNER, NEIGHBOUR):
            producer.start_session(owner, "s1")
            producer.append_message(owner, "s1", "user", f"hello from {owner}")
            producer.save_state(owner, {"name": owner})
            producer.set_session_data(owner, "s1", "lang", "en")
            producer.record_step(owner, "look", "a door", session="s1")


async def test_forget_leaves_nothing_that_names_the_owner(deployed: str, r: redis.Redis) -> None:
    populate(deployed, r)
    p = keys.partition(OWNER, 16)
    async with (
        AsyncReader.from_url(deployed) as reader,
        AsyncProducer.from_url(deployed) as producer,
    ):
        # Message vectors are opt-in (Settings.embed_messages): on, so forget must find them.
        async with running_worker(deployed, settings=MESSAGE_VECTORS):
            last = await producer.save_state(OWNER, {"v": 2})
            await reader.wait(last, timeout=10)
        # Leftovers that name the owner outside its projection keys: a dead letter, a
        # pending feed entry, an old version's key, cutoff and fence fields, a request.
        r.xadd(keys.feed(p), {"o": OWNER, "l": "1-1"})
        async with running_worker(deployed, settings=MESSAGE_VECTORS):
            tail = await producer.save_state(NEIGHBOUR, {"v": 3})
            await reader.wait(tail, timeout=10)
        assert any(f[b"owner"] == OWNER.encode() for _, f in r.xrange(keys.dlq(p)))
        await producer.save_state(OWNER, {"v": 4})
        r.xreadgroup("v1", "stalled", {keys.feed(p): ">"})
        r.hset(keys.Projection(p, 7).key("state", OWNER), "doc", b"x")
        r.hset(keys.cutoff(p, 1), OWNER, "1-0")
        r.hset(keys.fences(p, 1), OWNER, "0000000000001-0000000000")
        r.zadd(keys.forget_requests(p), {OWNER: 1})
        assert len(mentions(r)) > 10
        vectors = [k for k in keyspace(r) if b":vec" in k and _MENTION.search(k)]
        assert len(vectors) >= 2, "the owner's message vectors and their meta"
        neighbour_state = await reader.state(NEIGHBOUR)

        assert main(["forget", OWNER, "--yes", "--redis-url", deployed]) == 0

        assert mentions(r) == []
        assert await reader.state(NEIGHBOUR) == neighbour_state
        assert await reader.history(NEIGHBOUR, "s1") != []
        audit = r.xrange(keys.forget_audit())
        assert len(audit) == 1
        record = audit[0][1]
        assert set(record) == {b"owner_sha256", b"at_ms", b"entries", b"keys"}
        assert record[b"owner_sha256"] == owner_hash(OWNER).encode()
        assert int(record[b"entries"]) == 7 and int(record[b"keys"]) > 7

        # Replay folds the logs again: nothing of the owner comes back.
        replay_all(r, Settings.from_url(deployed), catchup_timeout_s=5, grace_s=0.0)
        assert mentions(r) == []

        # A later append starts a fresh log, folded as usual.
        async with running_worker(deployed):
            fresh = await producer.save_state(OWNER, {"again": 1})
            await reader.wait(fresh, timeout=10)
        assert r.xlen(keys.log(p, OWNER)) == 1
        assert await reader.state(OWNER) == {"again": 1}
        assert await reader.history(OWNER, "s1") == []


def test_an_entry_in_flight_during_the_forget_writes_nothing(deployed: str, r: redis.Redis) -> None:
    with Producer.from_url(deployed) as producer:
        receipt = producer.save_state(OWNER, {"v": 1})
    p = receipt.partition
    # A worker has read the entry and fetched its log entry, then stalls...
    rows = r.xreadgroup("v1", "slow", {keys.feed(p): ">"})
    feed_id = rows[0][1][0][0].decode()
    fields = r.xrange(keys.log(p, OWNER), receipt.log_id, receipt.log_id)[0][1]
    event = decode_entry(OWNER, receipt.log_id, fields)
    ctx = ApplyContext(keys.Projection(p, 1), Settings(), int(time.time() * 1000))
    ops = Planner(default_projections(), Settings(), 5).event_writes(event, ctx).ops
    assert main(["forget", OWNER, "--yes", "--redis-url", deployed]) == 0
    # ... and applies after the forget: the gate's XACK returns 0, so nothing is written.
    call: Any = r.execute_command
    assert call(*apply_command(keys.feed(p), "v1", [(feed_id, ops)])) == 0
    assert mentions(r) == []


async def test_owner_forgotten_event_is_run_by_the_worker(deployed: str, r: redis.Redis) -> None:
    populate(deployed, r)
    p = keys.partition(OWNER, 16)
    async with (
        AsyncProducer.from_url(deployed) as producer,
        AsyncReader.from_url(deployed) as reader,
        running_worker(deployed),
    ):
        receipt = await producer.append(OWNER, OwnerForgotten(reason="user asked"))
        assert (await reader.wait(receipt, timeout=10)).applied
        # The worker runs the filed forget right after the batch that held the event.
        for _ in range(500):
            if r.xlen(keys.forget_audit()):
                break
            await asyncio.sleep(0.01)
        (audit,) = r.xrange(keys.forget_audit())
        assert audit[1][b"owner_sha256"] == owner_hash(OWNER).encode()
        assert mentions(r) == []
        assert r.zcard(keys.forget_requests(p)) == 0
        assert forget_requested(r, Settings.from_url(deployed)) == []
        assert await reader.state(NEIGHBOUR) == {"name": NEIGHBOUR}
