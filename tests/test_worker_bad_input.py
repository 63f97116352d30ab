"""Garbage written straight to Redis by other languages: each bad entry goes to the DLQ
with a readable reason, the worker keeps going, and the valid events around the bad ones
are applied exactly once."""

from __future__ import annotations

import random
from typing import Any

import msgpack
import redis

from memstream.producers import Producer, keys
from memstream.projections.reader import AsyncReader
from tests.workers_util import running_worker

OWNER = "agent.mixed"
P = keys.partition(OWNER, 16)


def _poison(r: redis.Redis, kind: int, i: int) -> str:
    """Write one bad entry; return the reason fragment the DLQ must show."""
    feed, log = keys.feed(P), keys.log(P, OWNER)
    if kind == 0:  # garbage pointer fields
        r.xadd(feed, {"x": "y", "junk": str(i)})
        return "needs fields 'o'"
    if kind == 1:  # pointer to a log entry that does not exist
        r.xadd(feed, {"o": OWNER, "l": f"{i + 1}-0"})
        return "is missing"
    if kind == 2:  # undecodable payload
        log_id = r.xadd(log, {"type": "state.saved", "data": b"\xc1\xff", "ct": "msgpack"})
        r.xadd(feed, {"o": OWNER, "l": log_id})
        return "not valid msgpack"
    if kind == 3:  # wrong payload field type
        bad = msgpack.packb({"role": "user", "content": 12345})
        log_id = r.xadd(log, {"type": "message.appended", "data": bad, "session": "s1"})
        r.xadd(feed, {"o": OWNER, "l": log_id})
        return "data.content"
    if kind == 4:  # owner breaking the id rule
        r.xadd(feed, {"o": "bad owner{x}", "l": "1-0"})
        return "feed entry o"
    # a valid owner of another partition pointed at from this feed
    other = next(o for o in (f"o{j}" for j in range(100)) if keys.partition(o, 16) != P)
    r.xadd(feed, {"o": other, "l": "1-0"})
    return "does not belong to partition"


async def test_mixed_garbage_is_dead_lettered_and_valid_events_applied_once(
    deployed: str, r: redis.Redis
) -> None:
    rng = random.Random(7)
    expected_reasons: list[str] = []
    contents: list[str] = []
    with Producer.from_url(deployed) as producer:
        for i in range(400):
            if rng.random() < 0.4:
                expected_reasons.append(_poison(r, rng.randrange(6), i))
            else:
                contents.append(f"msg {i}")
                producer.append_message(OWNER, "s1", "user", contents[-1])
        # An unknown type from a newer producer is acked and counted, not dead-lettered.
        r.fcall("ms_append", 2, keys.log(P, OWNER), keys.feed(P),
                "type", "robot.moved", "data", "{}", "ct", "json")  # fmt: skip
        last = producer.append_message(OWNER, "s1", "user", "the end")
    contents.append("the end")

    worker = running_worker(deployed, settings={"history_cap": 1000})
    async with worker, AsyncReader.from_url(deployed) as reader:
        assert (await reader.wait(last, timeout=30)).applied
        history = await reader.history(OWNER, "s1", last=1000)

    assert [m["content"] for m in history] == contents
    dlq: Any = r.xrange(keys.dlq(P))
    assert len(dlq) == len(expected_reasons)
    for (_, fields), needle in zip(dlq, expected_reasons, strict=True):
        assert needle in fields[b"reason"].decode(), (needle, fields)
        assert fields[b"group"] == b"v1"
    stats = r.hgetall(keys.Projection(P, 1).partition_key("stats"))
    assert stats[b"unknown"] == b"1"
    assert int(stats[b"dlq"]) == len(expected_reasons)
    assert r.xpending(keys.feed(P), "v1")["pending"] == 0


async def test_wait_reports_applied_and_dead_lettered(deployed: str, r: redis.Redis) -> None:
    with Producer.from_url(deployed) as producer:
        good = producer.append_message(OWNER, "s1", "user", "fine")
        doomed = producer.append_message(OWNER, "s1", "user", "lost")
    r.xdel(keys.log(P, OWNER), doomed.log_id)  # its log entry vanishes before any worker
    async with running_worker(deployed), AsyncReader.from_url(deployed) as reader:
        applied = await reader.wait(good, timeout=10)
        dead = await reader.wait(doomed, timeout=10)
    assert applied.status == "applied" and applied.applied
    assert dead.status == "dead_lettered" and not dead.applied
    assert dead.reason is not None and "is missing" in dead.reason
