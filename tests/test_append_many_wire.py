"""``FCALL ms_append_many`` on a real Redis: what it stores, refuses and deduplicates.

The reply shape and the per-event rules are the wire contract (docs/wire-protocol.md):
each event is checked on its own, the valid ones are stored, the refused ones come back
by index with their reason, and the whole call is refused only when it is malformed.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from memstream.producers import decode_entry, keys
from memstream.producers.events import StepRecorded

P = 3  # the partition every owner below belongs to (with 16 partitions)


def owners_of(p: int, n: int) -> list[str]:
    """``n`` owner ids of partition ``p``."""
    out: list[str] = []
    i = 0
    while len(out) < n:
        name = f"many-{i}"
        if keys.partition(name, 16) == p:
            out.append(name)
        i += 1
    return out


def step(action: str, **extra: str) -> list[str]:
    args = ["type", "step.recorded", "data", json.dumps({"action": action}), "ct", "json"]
    for name, value in extra.items():
        args += [name, value]
    return args


def many(r: redis.Redis, owners: list[str], events: list[tuple[int, list[Any]]]) -> Any:
    """Send one ms_append_many: ``events`` are (index into ``owners``, name/value args)."""
    args: list[Any] = []
    for i, pairs in events:
        args += [i + 2, len(pairs), *pairs]
    log_keys = [keys.log(P, o) for o in owners]
    return r.execute_command(  # type: ignore[no-untyped-call]
        "FCALL", "ms_append_many", 1 + len(owners), keys.feed(P), *log_keys, *args
    )


def actions(r: redis.Redis, owner: str) -> list[str]:
    entries: Any = r.xrange(keys.log(P, owner))
    out = []
    for log_id, fields in entries:
        event = decode_entry(owner, log_id.decode(), fields).event
        assert isinstance(event, StepRecorded)
        out.append(event.action)
    return out


def test_stores_valid_events_and_names_each_refused_one(deployed: str, r: redis.Redis) -> None:
    a, b = owners_of(P, 2)
    ids, refused = many(
        r,
        [a, b],
        [
            (0, step("a1")),
            (1, step("b1")),
            (0, ["type", "Bad-Type", "data", "{}"]),
            (0, step("a2", session="s 1")),  # a space breaks the id rule
            (1, step("b2")),
            (0, ["type", "step.recorded"]),
        ],
    )
    assert [x is None for x in ids] == [False, False, True, True, False, True]
    refused_at = refused[0::2]
    reasons = [x.decode() for x in refused[1::2]]
    assert refused_at == [2, 3, 5]
    assert reasons[0].startswith("type must be 3 to 64 characters")
    assert reasons[1].startswith("session must be 1 to 200 characters")
    assert reasons[2] == "field 'data' is required"
    assert actions(r, a) == ["a1"]
    assert actions(r, b) == ["b1", "b2"]
    # One id per stored event, log and feed alike, increasing in call order.
    stored = [x for x in ids if x is not None]
    assert all(log_id == feed_id for log_id, feed_id in stored)
    feed: Any = r.xrange(keys.feed(P))
    assert [f[0] for f in feed] == [x[1] for x in stored]
    heads: Any = r.hgetall(keys.heads(P))
    assert heads == {a.encode(): ids[0][0], b.encode(): ids[4][0]}
    assert r.get(keys.last_id(P)) == ids[4][0]


def test_dedups_by_eid_within_a_call_and_across_calls(deployed: str, r: redis.Redis) -> None:
    (a,) = owners_of(P, 1)
    first = r.execute_command(  # type: ignore[no-untyped-call]
        "FCALL", "ms_append", 2, keys.log(P, a), keys.feed(P), *step("x", eid="e1")
    )
    ids, refused = many(
        r, [a], [(0, step("x", eid="e1")), (0, step("y", eid="e2")), (0, step("y", eid="e2"))]
    )
    assert refused == []
    assert ids[0] == first  # stored by ms_append: the same record answers both functions
    assert ids[1] == ids[2]
    assert actions(r, a) == ["x", "y"]
    # And ms_append sees what ms_append_many recorded.
    again = r.execute_command(  # type: ignore[no-untyped-call]
        "FCALL", "ms_append", 2, keys.log(P, a), keys.feed(P), *step("y", eid="e2")
    )
    assert again == ids[1]


def test_owner_checked_once_refuses_only_its_events(deployed: str, r: redis.Redis) -> None:
    (a,) = owners_of(P, 1)
    (wrong,) = owners_of(P + 1, 1)  # belongs to another partition: a stale client
    ids, refused = many(r, [a, wrong], [(1, step("w1")), (0, step("a1")), (1, step("w2"))])
    assert refused[0::2] == [0, 2]
    assert all(x.decode().startswith("partition mismatch: owner") for x in refused[1::2])
    assert ids[1] is not None
    assert actions(r, a) == ["a1"]
    heads: Any = r.hgetall(keys.heads(P))
    assert list(heads) == [a.encode()]


def test_data_rules_apply_per_event(deployed: str, r: redis.Redis) -> None:
    (a,) = owners_of(P, 1)
    r.hset(keys.conf(P), "max_event_bytes", 200)
    deep = "[" * 70 + "]" * 70
    ids, refused = many(
        r,
        [a],
        [
            (0, step("x" * 300)),
            (0, ["type", "step.recorded", "data", deep, "ct", "json"]),
            (0, step("ok")),
        ],
    )
    assert refused[0::2] == [0, 1]
    assert refused[1].decode().startswith("data is ")
    assert refused[3].decode() == "data nests maps and lists deeper than 64 levels"
    assert ids[2] is not None and actions(r, a) == ["ok"]


@pytest.mark.parametrize(
    ("numkeys_and_keys", "tail", "reason"),
    [
        (["1", "ms:{3}:feed"], [], "ms_append_many takes the feed"),
        (["2", "ms:{3}:log:x", "ms:{3}:feed"], ["2", "0"], "ms_append_many takes the feed"),
        (["2", "ms:{3}:feed", "LOG"], [], "ms_append_many takes 1 to 1000 events, got 0"),
        (["2", "ms:{3}:feed", "LOG"], ["3", "0"], "event #0: key# must be an integer"),
        (["2", "ms:{3}:feed", "LOG"], ["2", "4", "type"], "event #0: argument count"),
        (["2", "ms:{3}:feed", "LOG"], ["2", "0", "2"], "event #1: argument count"),
        (["2", "ms:{99}:feed", "LOG"], ["2", "0"], "deployment not initialised"),
    ],
)
def test_malformed_calls_are_refused_whole(
    deployed: str, r: redis.Redis, numkeys_and_keys: list[str], tail: list[str], reason: str
) -> None:
    (a,) = owners_of(P, 1)
    call = [keys.log(P, a) if x == "LOG" else x for x in numkeys_and_keys]
    with pytest.raises(redis.ResponseError, match=f"^memstream: {reason}"):
        r.execute_command("FCALL", "ms_append_many", *call, *tail)  # type: ignore[no-untyped-call]
    assert r.xlen(keys.feed(P)) == 0


def test_log_key_of_another_partition_is_refused_per_event(deployed: str, r: redis.Redis) -> None:
    (a,) = owners_of(P, 1)
    args = [2, 6, *step("x"), 3, 6, *step("y")]
    ids, refused = r.execute_command(  # type: ignore[no-untyped-call]
        "FCALL", "ms_append_many", 3, keys.feed(P), "ms:{4}:log:zed", keys.log(P, a), *args
    )
    assert ids[0] is None and ids[1] is not None
    assert refused[0] == 0
    assert refused[1].decode().startswith("log key is not in the partition of the feed 3")


def test_more_than_1000_events_refused_whole(deployed: str, r: redis.Redis) -> None:
    (a,) = owners_of(P, 1)
    with pytest.raises(redis.ResponseError, match="takes 1 to 1000 events, got 1001"):
        many(r, [a], [(0, step("x"))] * 1001)
    assert r.xlen(keys.feed(P)) == 0


@pytest.mark.parametrize("ct", ["json", "msgpack"])
def test_depth_bound_is_exact_at_64(deployed: str, r: redis.Redis, ct: str) -> None:
    # The run-skipping pre-count must let 64 levels through and still catch 65, with
    # text around the containers (what the skip pattern jumps over).
    (a,) = owners_of(P, 1)

    def nested(depth: int) -> bytes:
        if ct == "json":
            return b'{"k":' + b"[" * (depth - 1) + b'"x[{"' + b"]" * (depth - 1) + b"}"
        return b"\x81\xa1k" + b"\x91" * (depth - 1) + b"\xa3x\x91\x81"

    ok = many(r, [a], [(0, ["type", "state.saved", "data", nested(64), "ct", ct])])
    assert ok[1] == [] and ok[0][0] is not None
    bad = many(r, [a], [(0, ["type", "state.saved", "data", nested(65), "ct", ct])])
    assert bad[1][1] == b"data nests maps and lists deeper than 64 levels"
    with pytest.raises(redis.ResponseError, match="deeper than 64"):
        r.fcall("ms_append", 2, keys.log(P, a), keys.feed(P), "type", "state.saved",
                "data", nested(65), "ct", ct)  # fmt: skip
