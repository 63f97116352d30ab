"""``append_many`` on a deployment whose loaded library predates ``ms_append_many``: it
falls back to pipelined single ``ms_append`` calls, with one WARNING, sync and async,
against a real redis-server holding the library text without that function."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import redis

from memstream.producers import AppendManyError, AsyncProducer, Producer, keys
from memstream.producers.events import StepRecorded
from memstream.workers.deploy import KEY_PLACEHOLDER, load_functions, lua_sources, signing_key

REGISTER_MANY = "redis.register_function('ms_append_many', ms_append_many)"
WARNING = "predate ms_append_many"


def load_old_library(r: redis.Redis) -> None:
    """Replace the producer library with its text minus ``ms_append_many`` (libraries load
    whole: one function cannot be deleted alone)."""
    (source,) = [s for s in lua_sources() if s.startswith("#!lua name=memstream\n")]
    assert REGISTER_MANY in source
    old = source.replace(REGISTER_MANY, "").replace(KEY_PLACEHOLDER, signing_key(r))
    r.function_load(old, replace=True)
    with pytest.raises(redis.ResponseError, match=r"(?i)function not found"):
        r.fcall("ms_append_many", 1, keys.feed(0))


@pytest.fixture
def old(r: redis.Redis, deployed: str) -> str:
    load_old_library(r)
    return deployed


def items(n: int, owners: tuple[str, ...] = ("fa", "fb", "fc")) -> list[tuple[Any, ...]]:
    return [(owners[i % len(owners)], StepRecorded(action=f"s{i}"), None, f"e{i}")
            for i in range(n)]  # fmt: skip


def actions(r: redis.Redis, owner: str) -> list[bytes]:
    log = keys.log(keys.partition(owner, 16), owner)
    return [fields[b"eid"] for _, fields in r.xrange(log)]


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [rec.getMessage() for rec in caplog.records
            if rec.levelno == logging.WARNING and WARNING in rec.getMessage()]  # fmt: skip


def test_sync_falls_back_in_order_with_one_warning(
    old: str, r: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    batch = items(1200)  # two round trips
    with caplog.at_level(logging.WARNING), Producer.from_url(old) as producer:
        receipts = producer.append_many(batch)
        again = producer.append_many(batch[:10])  # same eids: deduplicated, nothing new
        more = producer.append_many(items(3, ("fd",)))
    assert len(warnings_of(caplog)) == 1
    assert "memstream init" in warnings_of(caplog)[0]
    assert [x.owner for x in receipts] == [o for o, *_ in batch]
    assert all(x.log_id and x.feed_id for x in receipts)
    assert again == receipts[:10]
    assert [x.owner for x in more] == ["fd"] * 3
    for owner in ("fa", "fb", "fc"):
        want = [e.encode() for o, _, _, e in batch if o == owner]
        assert actions(r, owner) == want  # each owner's order, each event once


def test_sync_fallback_names_refused_items(old: str, r: redis.Redis) -> None:
    p = keys.partition("fa", 16)
    r.hset(keys.conf(p), "max_event_bytes", 90)  # the producer still believes 1 MiB
    batch: list[tuple[Any, ...]] = [
        ("fa", StepRecorded(action="x" * 100)),
        ("fa", StepRecorded(action="ok")),
    ]
    with Producer.from_url(old) as producer, pytest.raises(AppendManyError) as info:
        producer.append_many(batch)
    assert list(info.value.errors) == [0]
    assert "over max_event_bytes 90" in str(info.value.errors[0])
    assert info.value.receipts[1] is not None and r.xlen(keys.log(p, "fa")) == 1


async def test_async_falls_back_with_one_warning(
    old: str, r: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    batch = items(30)
    with caplog.at_level(logging.WARNING):
        async with AsyncProducer.from_url(old) as producer:
            receipts = await producer.append_many(batch)
            await producer.append_many(items(2, ("fd",)))
    assert len(warnings_of(caplog)) == 1
    assert [x.owner for x in receipts] == [o for o, *_ in batch]
    assert actions(r, "fb") == [e.encode() for o, _, _, e in batch if o == "fb"]


def test_current_library_sends_no_warning(
    old: str, r: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    load_functions(r)  # what `memstream init` loads
    with caplog.at_level(logging.WARNING), Producer.from_url(old) as producer:
        producer.append_many(items(5))
    assert warnings_of(caplog) == []
    assert r.xlen(keys.log(keys.partition("fa", 16), "fa")) == 2
