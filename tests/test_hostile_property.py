"""Property (issue 11): extreme values in every numeric field of every event type, sent
through ms_append or written around it, never break the gate. Through the worker's real
path (ms_fetch, the planner, ms_apply): nothing stays pending and nothing raises (no crash
loop), an entry the event model refuses is dead-lettered alone, one it accepts is applied,
the valid neighbours are applied exactly once, and the live projections equal a replay."""

from __future__ import annotations

import asyncio
import json
import math
import typing
from collections.abc import Mapping
from typing import Any

import pytest
import redis
import redis.asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from memstream.producers import Producer, keys
from memstream.producers.events import SkillExecuted, build, known_types, model_for
from memstream.producers.settings import Settings
from memstream.projections.reader import AsyncReader
from memstream.projections.registry import default_projections
from memstream.workers.consumer import PartitionConsumer
from memstream.workers.deploy import init
from memstream.workers.metrics import Metrics
from memstream.workers.options import WorkerOptions
from memstream.workers.plan import Planner
from memstream.workers.replay_owner import replay_owner
from tests.test_wire_protocol import multi_fallback_append

OWNER = "agent.fuzz"
P = keys.partition(OWNER, 16)
TENSOR = {"shape": [2], "dtype": "float32", "data": "AAAAAAAAAAA="}

BASE: dict[str, dict[str, Any]] = {
    "episode.saved": {"episode_id": "e1", "task": "t"},
    "knowledge.learned": {"knowledge_id": "k1", "description": "d"},
    "skill.executed": {"name": "h", "success": True},
    "evidence.observed": {"scenario": "sc", "path": ["a"], "variable": "v", "outcome": "x"},
    "tensor.recorded": dict(TENSOR),
    "ttl.extended": {"seconds": 60},
    "session.started": {"ttl_s": 60},
    "session.ttl_set": {"ttl_s": 60},
    "world.configured": {"scenario": "sc", "variables": {"v": ["x", "y"]}, "levels": 1},
    "exploration.recorded": {"trigger": "curiosity", "pattern": "p", "success": True},
    "store.put": {"namespace": ["n"], "key": "k", "value": {"text": "t"}, "ttl_s": 60},
    "store.refreshed": {
        "namespace": ["n"],
        "key": "k",
        "of": "1700000000000-0000000000",
        "ttl_s": 1,
    },
}
"""A valid payload of every event type that has a numeric field."""
LISTS = {("tensor.recorded", "shape"), ("world.configured", "ttl_s")}
"""Numeric fields that are lists of numbers: the extreme value goes inside the list."""
MAPS = {("tensor.recorded", "groups")}

EXTREMES = [0, -0.0, -1, 1, 0.5, 2**31, 2**53, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 2**70,
            -(2**63), 1e13, 1e308, -1e308, 5e-324, math.nan, math.inf, -math.inf]  # fmt: skip
numbers = st.one_of(
    st.sampled_from(EXTREMES),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
)


def _numeric(annotation: Any) -> bool:
    if annotation in (int, float):
        return True
    return any(_numeric(a) for a in typing.get_args(annotation))


def numeric_fields() -> list[tuple[str, str]]:
    """Every (type, field) of every registered model whose values may hold numbers."""
    found = []
    for event_type in known_types():
        model = model_for(event_type)
        assert model is not None
        for name, info in model.model_fields.items():
            if _numeric(info.annotation) and (event_type, name) != ("tensor.recorded", "data"):
                found.append((event_type, name))
    return found


def test_every_numeric_field_is_covered() -> None:
    fields = numeric_fields()
    assert len(fields) >= 10
    for event_type, _ in fields:
        assert event_type in BASE, f"add a valid {event_type} payload to BASE"


def _payload(event_type: str, name: str, value: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(BASE[event_type]))
    if (event_type, name) in LISTS:
        data[name] = [value]
    elif (event_type, name) in MAPS:
        data[name] = {"g": [value]}
    else:
        data[name] = value
    return data


def _accepted(event_type: str, data: dict[str, Any]) -> bool:
    try:
        build(event_type, 1, json.loads(json.dumps(data)))
    except (ValidationError, ValueError):
        return False
    return True


hostile = st.lists(
    st.tuples(st.sampled_from(numeric_fields()), numbers, st.booleans()), min_size=1, max_size=6
)


def _owner_state(r: redis.Redis) -> dict[bytes, Any]:
    """Every projection key of the owner in v1: type, content and expire time."""
    reads = {b"hash": ("HGETALL",), b"zset": ("ZRANGE", 0, -1, "WITHSCORES"), b"string": ("GET",),
             b"set": ("SMEMBERS",), b"stream": ("XRANGE", "-", "+")}  # fmt: skip
    call: Any = r.execute_command
    out = {}
    for key in r.scan_iter(match=keys.owner_keys_pattern(P, 1, OWNER), count=1000):
        if keys.key_owner(key.decode(), P, 1) != OWNER:
            continue
        kind: Any = r.type(key)
        out[key] = (kind, call(*reads[kind][:1], key, *reads[kind][1:]), r.pexpiretime(key))
    return out


async def _drain(url: str) -> None:
    """The worker's path, batch by batch, until the feed is done: a raise is a crash."""
    client = redis.asyncio.Redis.from_url(url)
    config = Settings.from_url(url)
    planner = Planner(default_projections(), config, 5)
    consumer = PartitionConsumer(
        client, config, planner, WorkerOptions(consumer="fuzz", block_ms=10, batch=7),
        Metrics(), partition=P, partitions=16, version=1,
    )  # fmt: skip
    try:
        while entries := await consumer._read():
            await consumer.finish(await consumer.prepare(entries))
    finally:
        await client.aclose()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cases=hostile)
def test_extreme_numbers_never_break_the_gate(
    r: redis.Redis, redis_url: str, cases: list[tuple[tuple[str, str], Any, bool]]
) -> None:
    r.flushall()
    init(r, partitions=16)
    accepted: dict[str, bool] = {}
    with Producer.from_url(redis_url) as producer, r.client() as conn:  # type: ignore[no-untyped-call]
        neighbours = 0
        for (event_type, name), value, around in cases:
            producer.append(OWNER, SkillExecuted(name="s", success=True, duration_s=1.0))
            neighbours += 1
            data = _payload(event_type, name, value)
            raw = json.dumps(data)
            model = model_for(event_type)
            session = ["session", "s"] if model and model.SESSION == "required" else []
            if around:  # written around ms_append, as the MULTI fallback does
                fields = ["type", event_type, "v", "1", "ct", "json", "data", raw, *session]
                _, feed_id = multi_fallback_append(conn, OWNER, 16, fields)
            else:
                reply: Any = r.fcall("ms_append", 2, keys.log(P, OWNER), keys.feed(P),
                                     "type", event_type, "data", raw, "ct", "json",
                                     *session)  # fmt: skip
                feed_id = reply[1].decode()
            accepted[feed_id] = _accepted(event_type, data)
        producer.append(OWNER, SkillExecuted(name="s", success=True, duration_s=1.0))
        neighbours += 1

    asyncio.run(_drain(redis_url))

    assert r.xpending(keys.feed(P), "v1")["pending"] == 0
    dlq: Any = r.xrange(keys.dlq(P))
    dead = {f[b"feed_id"].decode(): f[b"reason"].decode() for _, f in dlq}
    assert len(dead) == len(dlq)  # each entry dead-lettered at most once
    for feed_id, ok in accepted.items():
        assert (feed_id not in dead) == ok, (feed_id, ok, dead.get(feed_id), cases)

    async def stats() -> Mapping[str, Any]:
        async with AsyncReader.from_url(redis_url) as reader:
            return await reader.skill_stats(OWNER, "s")

    got = asyncio.run(stats())
    assert got["executions"] == neighbours
    assert got["mean_duration_s"] == pytest.approx(1.0)

    live = _owner_state(r)
    replay_owner(r, OWNER)
    assert _owner_state(r) == live
