"""``Producer.append_many`` / ``AsyncProducer.append_many`` through ``ms_append_many``:
per-item refusals, order, convergence with single appends, and hostile input."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from memstream.producers import AppendManyError, AsyncProducer, Producer, keys
from memstream.producers.events import SkillExecuted, StepRecorded
from memstream.producers.events_messages import MessageAppended
from memstream.projections.reader import AsyncReader
from memstream.workers.deploy import init
from memstream.workers.signing import Verifier, signature
from tests.workers_util import running_worker


def in_partition(p: int, n: int, prefix: str = "o") -> list[str]:
    out: list[str] = []
    i = 0
    while len(out) < n:
        if keys.partition(f"{prefix}{i}", 16) == p:
            out.append(f"{prefix}{i}")
        i += 1
    return out


def test_server_refusals_are_named_by_index_and_the_rest_stored(
    deployed: str, r: redis.Redis
) -> None:
    (small_p,) = in_partition(2, 1)
    (other,) = in_partition(5, 1)
    r.hset(keys.conf(2), "max_event_bytes", 90)  # the producer still believes 1 MiB
    items: list[tuple[Any, ...]] = [
        (small_p, StepRecorded(action="x" * 100)),
        (other, StepRecorded(action="fine")),
        (small_p, StepRecorded(action="y")),
        (small_p, StepRecorded(action="z" * 100)),
    ]
    with Producer.from_url(deployed) as producer, pytest.raises(AppendManyError) as info:
        producer.append_many(items)
    err = info.value
    assert sorted(err.errors) == [0, 3]
    assert all("over max_event_bytes 90" in str(e) for e in err.errors.values())
    assert [x is None for x in err.receipts] == [True, False, False, True]
    stored = [x for x in err.receipts if x is not None]
    assert [(x.owner, x.partition) for x in stored] == [(other, 5), (small_p, 2)]
    assert r.xlen(keys.log(2, small_p)) == 1 and r.xlen(keys.log(5, other)) == 1


def test_many_owners_and_partitions_keep_each_owners_order(deployed: str, r: redis.Redis) -> None:
    owners = [f"agent-{i}" for i in range(40)]
    items = [(owners[i % 40], StepRecorded(action=f"s{i}"), None, f"e{i}") for i in range(1300)]
    with Producer.from_url(deployed) as producer:
        receipts = producer.append_many(items)
        again = producer.append_many(items[:300])  # same eids: nothing new
    assert [x.owner for x in receipts] == [o for o, *_ in items]
    assert again == receipts[:300]
    for owner in owners:
        p = keys.partition(owner, 16)
        log: Any = r.xrange(keys.log(p, owner))
        mine = [x for x in receipts if x.owner == owner]
        assert [e[0].decode() for e in log] == [x.log_id for x in mine]
        assert r.hget(keys.heads(p), owner) == log[-1][0]


def test_entries_are_signed_as_the_verifier_checks(deployed: str, r: redis.Redis) -> None:
    (owner,) = in_partition(7, 1)
    with Producer.from_url(deployed) as producer:
        receipts = producer.append_many([(owner, SkillExecuted(name="s", success=True))] * 5)
    init(r, partitions=16, require_signed=True)
    key: Any = r.get(keys.SIGNING_KEY)
    verifier = Verifier(r)
    rows: Any = r.xrange(keys.log(7, owner))
    assert [x[0].decode() for x in rows] == [x.log_id for x in receipts]
    for log_id, fields in rows:
        assert fields[b"sig"].decode() == signature(key, owner, log_id.decode(), fields)
        assert verifier.reason(7, owner, log_id.decode(), fields) is None


def test_hostile_values_are_capped_and_deep_data_refused_per_event(
    deployed: str, r: redis.Redis
) -> None:
    (owner,) = in_partition(1, 1)
    depth = 100_000
    groups: list[Any] = [
        2, 4, "type", "x" * 1_000_000, "data", "{}",
        2, 6, "type", "state.saved", "data", b"\x91" * depth + b"\xc0", "ct", "msgpack",
        2, 6, "type", "state.saved", "data", "[" * depth + "]" * depth, "ct", "json",
        2, 6, "type", "state.saved", "data", '{"state":{}}', "ct", "json",
    ]  # fmt: skip
    ids, refused = r.fcall("ms_append_many", 2, keys.feed(1), keys.log(1, owner), *groups)
    assert refused[0::2] == [0, 1, 2]
    assert all(len(x) < 400 for x in refused[1::2])
    assert [b"nest" in x for x in refused[1::2]] == [False, True, True]
    assert ids[3] is not None and r.xlen(keys.log(1, owner)) == 1
    with pytest.raises(redis.ResponseError) as caught:
        r.fcall("ms_append_many", 2, keys.feed(1), keys.log(1, owner), "9" * 1_000_000, "0")
    assert len(str(caught.value)) < 400


async def test_append_many_converges_with_single_appends(deployed: str, r: redis.Redis) -> None:
    one, batch = in_partition(4, 1, "single-")[0], in_partition(9, 1, "batch-")[0]
    events = [
        MessageAppended(role="user" if i % 2 else "assistant", content=f"turn {i}")
        for i in range(30)
    ]
    async with AsyncProducer.from_url(deployed) as producer:
        for e in events:
            last_one = await producer.append(one, e, session="s")
        receipts = await producer.append_many([(batch, e, "s") for e in events])
    async with running_worker(deployed), AsyncReader.from_url(deployed) as reader:
        assert (await reader.wait(last_one, timeout=20)).applied
        assert (await reader.wait(receipts[-1], timeout=20)).applied
        a = await reader.history(one, "s", last=50)
        b = await reader.history(batch, "s", last=50)
    assert [(m["role"], m["content"]) for m in a] == [(m["role"], m["content"]) for m in b]
    assert len(b) == 30
