"""Hostile input at the gate (issue 11): no entry can poison its neighbours.

Each test writes the hostile entry the way an attacker or a buggy client would (raw
``ms_append`` arguments, raw XADDs to the feed or the log) between valid events, runs a
real worker, and checks: the bad entry is dead-lettered with its reason, the valid ones
are applied exactly once, nothing stays pending (no crash loop).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import msgpack
import pytest
import redis

from memstream.producers import Producer, keys
from memstream.producers.errors import InvalidInputError
from memstream.producers.events import SkillExecuted
from memstream.projections.ops import apply_command
from memstream.projections.reader import AsyncReader
from memstream.workers import dlq
from memstream.workers.cli import main
from memstream.workers.deploy import init
from memstream.workers.replay_owner import replay_owner
from memstream.workers.signing import Verifier, signature
from tests.test_wire_protocol import multi_fallback_append
from tests.workers_util import running_worker

OWNER = "agent.hostile"
P = keys.partition(OWNER, 16)


def _same_partition(prefix: str) -> str:
    return next(o for o in (f"{prefix}{j}" for j in range(1000)) if keys.partition(o, 16) == P)


def _raw_append(r: redis.Redis, owner: str, event_type: str, data: Any) -> str:
    """An append through ms_append with a payload the Python producer would refuse."""
    reply: Any = r.fcall(
        "ms_append", 2, keys.log(P, owner), keys.feed(P),
        "type", event_type, "data", json.dumps(data), "ct", "json",
    )  # fmt: skip
    return str(reply[0].decode())


def _dlq(r: redis.Redis) -> list[dict[bytes, bytes]]:
    rows: Any = r.xrange(keys.dlq(P))
    return [fields for _, fields in rows]


async def _skill_stats(url: str, owner: str, name: str) -> Mapping[str, Any]:
    async with AsyncReader.from_url(url) as reader:
        return await reader.skill_stats(owner, name)


def test_event_model_bounds_skill_duration() -> None:
    with pytest.raises(ValueError, match="duration_s"):
        SkillExecuted(name="s", success=True, duration_s=1e13)


async def test_overflowing_duration_is_dead_lettered_alone(deployed: str, r: redis.Redis) -> None:
    with Producer.from_url(deployed) as producer:
        producer.append(OWNER, SkillExecuted(name="s", success=True, duration_s=1.0))
        _raw_append(r, OWNER, "skill.executed", {"name": "s", "success": True, "duration_s": 1e13})
        producer.append(OWNER, SkillExecuted(name="s", success=True, duration_s=2.0))
        last = producer.append(OWNER, SkillExecuted(name="s", success=False, duration_s=3.0))
    async with running_worker(deployed), AsyncReader.from_url(deployed) as reader:
        assert (await reader.wait(last, timeout=20)).applied
        stats = await reader.skill_stats(OWNER, "s")
    assert stats["executions"] == 3
    assert stats["mean_duration_s"] == pytest.approx(2.0)
    (letter,) = _dlq(r)
    assert b"duration_s" in letter[b"reason"], letter
    assert r.xpending(keys.feed(P), "v1")["pending"] == 0
    # The owner rebuild (replay --owner) folds the same log to the same statistics.
    replay_owner(r, OWNER)
    assert await _skill_stats(deployed, OWNER, "s") == stats


def _pending_feed(r: redis.Redis, n: int) -> tuple[str, list[str]]:
    """A feed with a group holding ``n`` delivered, pending entries (for raw ms_apply)."""
    feed = keys.feed(P)
    r.xgroup_create(feed, "g", id="0", mkstream=True)
    add: Any = r.xadd
    ids = [add(feed, {"o": OWNER, "l": f"{i + 1}-0"}).decode() for i in range(n)]
    r.xreadgroup("g", "c", {feed: ">"}, count=n)
    return feed, ids


def test_ms_apply_rejects_an_out_of_range_op_before_any_write(
    deployed: str, r: redis.Redis
) -> None:
    feed, ids = _pending_feed(r, 3)
    k = keys.Projection(P, 1).key("t", OWNER)
    entries = [
        (ids[0], [("HINCR", k, "n", 1)]),
        # a planner bug or a hand-made call: the first op is fine, the second overflows
        (ids[1], [("HINCR", k, "n", 100), ("HINCR", k, "big", 10**19)]),
        (ids[2], [("HINCR", k, "n", 1)]),
    ]
    call: Any = r.execute_command
    assert call(*apply_command(feed, "g", entries)) == 3
    assert r.hgetall(k) == {b"n": b"2"}  # nothing of the bad entry, not even its first op
    (letter,) = _dlq(r)
    assert letter[b"feed_id"] == ids[1].encode()
    assert b"HINCR" in letter[b"reason"], letter


def test_ms_apply_isolates_a_server_error(deployed: str, r: redis.Redis) -> None:
    feed, ids = _pending_feed(r, 4)
    pk = keys.Projection(P, 1)
    good, wrong = pk.key("t", OWNER), pk.key("t2", OWNER)
    r.set(wrong, "a string, not a hash")  # what no argument shows: the key's type
    version = "1700000000000-0000000001"
    entries = [
        (ids[0], [("HINCR", good, "n", 1)]),
        (ids[1], [("HINCR", wrong, "n", 1)]),  # found by validation (it reads the counter)
        (ids[2], [("LWW", wrong, "f", version, b"x")]),  # fails when it runs: pcall
        (ids[3], [("HINCR", good, "n", 1)]),
    ]
    call: Any = r.execute_command
    assert call(*apply_command(feed, "g", entries)) == 4
    assert r.hgetall(good) == {b"n": b"2"}
    letters = _dlq(r)
    assert [letter[b"feed_id"] for letter in letters] == [ids[1].encode(), ids[2].encode()]
    assert all(b"WRONGTYPE" in letter[b"reason"] for letter in letters), letters
    assert b"failed inside ms_apply" in letters[1][b"reason"]


async def test_unfetchable_pointers_are_dead_lettered(deployed: str, r: redis.Redis) -> None:
    feed = keys.feed(P)
    wrong_type = _same_partition("owner.wrongtype")
    r.set(keys.log(P, wrong_type), "not a stream")
    with Producer.from_url(deployed) as producer:
        first = producer.append_message(OWNER, "s1", "user", "one")
        r.xadd(feed, {"o": OWNER, "l": "99999999999999999999-0"})  # beyond uint64
        r.xadd(feed, {"o": wrong_type, "l": "1-0"})
        last = producer.append_message(OWNER, "s1", "user", "two")
    async with running_worker(deployed), AsyncReader.from_url(deployed) as reader:
        assert (await reader.wait(first, timeout=20)).applied
        assert (await reader.wait(last, timeout=20)).applied
        history = await reader.history(OWNER, "s1")
    assert [m["content"] for m in history] == ["one", "two"]
    reasons = sorted(letter[b"reason"].decode() for letter in _dlq(r))
    assert len(reasons) == 2, reasons
    assert any("99999999999999999999-0" in x for x in reasons), reasons
    assert any("WRONGTYPE" in x or "not a stream" in x for x in reasons), reasons
    assert r.xpending(feed, "v1")["pending"] == 0


async def test_duplicate_pointers_are_dead_lettered(deployed: str, r: redis.Redis) -> None:
    with Producer.from_url(deployed) as producer:
        receipts = [
            producer.append(OWNER, SkillExecuted(name="s", success=True, duration_s=1.0))
            for _ in range(4)
        ]
        for receipt in receipts[:3]:  # a second pointer to an entry that already has one
            r.xadd(keys.feed(P), {"o": OWNER, "l": receipt.log_id})
        last = producer.append(OWNER, SkillExecuted(name="s", success=True, duration_s=1.0))
    async with running_worker(deployed), AsyncReader.from_url(deployed) as reader:
        assert (await reader.wait(last, timeout=20)).applied
        live = await reader.skill_stats(OWNER, "s")
    assert live["executions"] == 5
    letters = _dlq(r)
    assert len(letters) == 3
    assert all(b"own pointer" in letter[b"reason"] for letter in letters), letters
    replay_owner(r, OWNER)
    assert await _skill_stats(deployed, OWNER, "s") == live


def test_ms_append_gives_the_log_entry_its_feed_id(deployed: str, r: redis.Redis) -> None:
    owners = [OWNER, _same_partition("other"), _same_partition("third")]
    with Producer.from_url(deployed) as producer:
        # Pipelined: many appends of three logs in the same milliseconds of one feed.
        receipts = producer.append_many(
            [(owners[i % 3], SkillExecuted(name="s", success=True)) for i in range(300)]
        )
        # A log pushed ahead of the feed by a raw XADD: the next append still gets one id.
        r.xadd(keys.log(P, OWNER), {"type": "x.y", "data": "{}"}, id="9000000000000-5")
        ahead = producer.append(OWNER, SkillExecuted(name="s", success=True))
    assert all(x.log_id == x.feed_id for x in receipts)
    assert ahead.log_id == ahead.feed_id == "9000000000000-6"
    pointers: Any = r.xrange(keys.feed(P))
    # 301 appends, and the pointer left behind when the log was found ahead (its entry
    # can never exist: workers dead-letter it as missing).
    assert len(pointers) == 302
    assert all(fields[b"l"] == feed_id for feed_id, fields in pointers)


def test_ms_append_error_does_not_echo_huge_values(deployed: str, r: redis.Redis) -> None:
    for name, value in (("type", "x" * 1_000_000), ("ct", "y" * 1_000_000),
                        ("v", "9" * 1_000_000)):  # fmt: skip
        with pytest.raises(redis.ResponseError) as caught:
            r.fcall("ms_append", 2, keys.log(P, OWNER), keys.feed(P),
                    "type", "a.b", "data", "{}", name, value)  # fmt: skip
        assert len(str(caught.value)) < 400, (name, len(str(caught.value)))
    with pytest.raises(redis.ResponseError) as caught:
        r.fcall("ms_append", 2, "ms:{1}:log:" + "z" * 1_000_000, keys.feed(P), "type", "a.b",
                "data", "{}")  # fmt: skip
    assert len(str(caught.value)) < 400


def test_producer_refuses_deep_payloads(deployed: str) -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(200):
        node["x"] = {}
        node = node["x"]
    with Producer.from_url(deployed) as producer, pytest.raises(InvalidInputError, match="nest"):
        producer.save_state(OWNER, deep)


@pytest.mark.parametrize("ct", ["json", "msgpack"])
def test_ms_append_refuses_deep_payloads(deployed: str, r: redis.Redis, ct: str) -> None:
    depth = 100_000
    data = (b"[" * depth + b"]" * depth) if ct == "json" else (b"\x91" * depth + b"\xc0")
    with pytest.raises(redis.ResponseError, match="nest"):
        r.fcall("ms_append", 2, keys.log(P, OWNER), keys.feed(P), "type", "state.saved",
                "data", data, "ct", ct)  # fmt: skip
    # Shallow data, brackets inside strings and big flat payloads still go in.
    fine = {
        "state": {"a": [[["[[[[[[[[{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{"]]], "b": "x" * 5000}
    }
    raw = json.dumps(fine).encode() if ct == "json" else msgpack.packb(fine)
    r.fcall("ms_append", 2, keys.log(P, OWNER), keys.feed(P), "type", "state.saved",
            "data", raw, "ct", ct)  # fmt: skip


def test_ms_append_signs_entries_as_the_verifier_checks(deployed: str, r: redis.Redis) -> None:
    with Producer.from_url(deployed) as producer:
        receipt = producer.append(OWNER, SkillExecuted(name="s", success=True), eid="e-9")
    rows: Any = r.xrange(keys.log(P, OWNER))
    [(log_id, fields)] = rows
    key: Any = r.get(keys.SIGNING_KEY)
    assert fields[b"sig"].decode() == signature(key, OWNER, receipt.log_id, fields)
    forged = {**fields, b"data": fields[b"data"] + b" "}
    assert forged[b"sig"].decode() != signature(key, OWNER, log_id.decode(), forged)
    init(r, partitions=16, require_signed=True)
    verifier = Verifier(r)
    assert verifier.reason(P, OWNER, receipt.log_id, fields) is None
    assert verifier.reason(P, OWNER, receipt.log_id, forged) is not None
    assert verifier.reason(P, "someone.else", receipt.log_id, fields) is not None


async def test_unsigned_entries_are_counted_by_default(deployed: str, r: redis.Redis) -> None:
    raw = {"type": "skill.executed", "v": "1", "ct": "json",
           "data": '{"name":"s","success":true,"duration_s":1.0}'}  # fmt: skip
    with Producer.from_url(deployed) as producer, r.client() as conn:  # type: ignore[no-untyped-call]
        flat = [x for kv in raw.items() for x in kv]
        multi_fallback_append(conn, OWNER, 16, flat)
        last = producer.append(OWNER, SkillExecuted(name="s", success=True, duration_s=1.0))
    async with running_worker(deployed), AsyncReader.from_url(deployed) as reader:
        assert (await reader.wait(last, timeout=20)).applied
        assert (await reader.skill_stats(OWNER, "s"))["executions"] == 2
    stats = r.hgetall(keys.Projection(P, 1).partition_key("stats"))
    assert stats[b"unsigned"] == b"1"


async def test_a_retried_pointer_applies_once(deployed: str, r: redis.Redis) -> None:
    with Producer.from_url(deployed) as producer:
        receipt = _skill_run(producer)
    feed = keys.feed(P)
    # As if a worker had dead-lettered it: its own pointer acked, a dead letter written.
    r.xreadgroup("v1", "gone", {feed: ">"})
    r.xack(feed, "v1", receipt.feed_id)
    letter = {"feed_id": receipt.feed_id, "owner": OWNER, "log_id": receipt.log_id,
              "group": "v1", "deliveries": "6", "reason": "delivered 6 times"}  # fmt: skip
    r.xadd(keys.dlq(P), letter)
    [outcome] = dlq.retry(r, list(dlq.iter_entries(r)))
    assert outcome.requeued
    # A copy of the re-queued pointer: the one-shot record lets only one of them apply.
    r.xadd(feed, {"o": OWNER, "l": receipt.log_id})
    with Producer.from_url(deployed) as producer:
        last = _skill_run(producer)
    async with running_worker(deployed), AsyncReader.from_url(deployed) as reader:
        assert (await reader.wait(last, timeout=20)).applied
        assert (await reader.skill_stats(OWNER, "s"))["executions"] == 2
    (dead,) = _dlq(r)
    assert b"own pointer" in dead[b"reason"]
    assert not r.exists(keys.retry(P, OWNER, receipt.log_id))


def _skill_run(producer: Producer) -> Any:
    return producer.append(OWNER, SkillExecuted(name="s", success=True, duration_s=1.0))


async def test_pointers_from_before_the_rule_still_apply(deployed: str, r: redis.Redis) -> None:
    """An upgraded deployment: entries the old ms_append wrote (log and feed ids differ,
    no signature) are applied; an old-style pointer written after the upgrade is not."""
    r.hdel(keys.conf(P), "own_from")  # as before this version's first `memstream init`
    log, feed = keys.log(P, OWNER), keys.feed(P)
    data = '{"name":"s","success":true,"duration_s":1.0}'
    for _ in range(3):
        log_id = r.xadd(log, {"type": "skill.executed", "v": "1", "ct": "json", "data": data})
        r.xadd(feed, {"o": OWNER, "l": log_id})  # XADD *: another id than the entry's
    init(r, partitions=16)  # the upgrade: records own_from
    ms = int(time.time() * 1000) + 1000  # ids that surely differ (XADD * may coincide)
    late = f"{ms}-0"
    r.xadd(log, {"type": "skill.executed", "v": "1", "ct": "json", "data": data}, id=late)
    r.xadd(feed, {"o": OWNER, "l": late}, id=f"{ms}-1")
    with Producer.from_url(deployed) as producer:
        last = _skill_run(producer)
    async with running_worker(deployed), AsyncReader.from_url(deployed) as reader:
        assert (await reader.wait(last, timeout=20)).applied
        assert (await reader.skill_stats(OWNER, "s"))["executions"] == 4
    (dead,) = _dlq(r)
    assert b"own pointer" in dead[b"reason"]
    assert b"unsigned" not in r.hgetall(keys.Projection(P, 1).partition_key("stats"))


def test_init_sets_the_signature_mode(deployed: str, r: redis.Redis) -> None:
    assert r.hget(keys.conf(P), "signed") is None  # default: count unsigned entries
    assert main(["init", "--require-signed", "--redis-url", deployed]) == 0
    assert r.hget(keys.conf(P), "signed") == b"1"
    assert main(["init", "--redis-url", deployed]) == 0  # kept when not given
    assert r.hget(keys.conf(P), "signed") == b"1"
    assert main(["init", "--no-require-signed", "--redis-url", deployed]) == 0
    assert r.hget(keys.conf(P), "signed") == b"0"


async def test_key_rotation_as_documented(deployed: str, r: redis.Redis) -> None:
    init(r, partitions=16, require_signed=True)
    with Producer.from_url(deployed) as producer:
        first = _skill_run(producer)
    async with running_worker(deployed), AsyncReader.from_url(deployed) as reader:
        assert (await reader.wait(first, timeout=20)).applied
    old_key = r.get(keys.SIGNING_KEY)
    # docs/security.md, "Known limits": the rotation procedure.
    r.delete(keys.SIGNING_KEY)
    for p in range(16):
        r.hdel(keys.conf(p), "own_from")
    init(r, partitions=16)
    assert r.get(keys.SIGNING_KEY) != old_key
    with Producer.from_url(deployed) as producer:
        second = _skill_run(producer)
    async with running_worker(deployed), AsyncReader.from_url(deployed) as reader:
        assert (await reader.wait(second, timeout=20)).applied
        assert (await reader.skill_stats(OWNER, "s"))["executions"] == 2
    assert _dlq(r) == []
    summary = replay_owner(r, OWNER)
    assert summary.stats.events == 2 and summary.stats.undecodable == 0
