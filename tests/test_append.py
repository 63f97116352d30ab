from __future__ import annotations

import threading
from typing import Any

import pytest
import redis

from memstream.producers import (
    AppendManyError,
    AppendRejectedError,
    AsyncProducer,
    InvalidIdError,
    InvalidInputError,
    NotInitialisedError,
    Producer,
    Redactor,
    decode_entry,
    keys,
)
from memstream.producers.events import StateSaved, StepRecorded
from memstream.producers.events_messages import MessageAppended
from tests.proxy import DroppingProxy
from tests.test_keys import BAD_IDS

OWNER = "alice"


def _snapshot(r: redis.Redis, owner: str = OWNER) -> tuple[Any, ...]:
    p = keys.partition(owner, 16)
    return (
        r.xrange(keys.log(p, owner)),
        r.hgetall(keys.heads(p)),
        r.xlen(keys.feed(p)),
    )


@pytest.fixture
def producer(deployed: str) -> Any:
    with Producer.from_url(deployed) as p:
        yield p


@pytest.fixture
def stored(producer: Producer) -> None:
    """Something already stored, which no rejected append may lose."""
    producer.append_message(OWNER, "s1", "user", "hello")
    producer.save_state(OWNER, {"mood": "ok"})


def test_append_returns_receipt_and_entry_decodes(producer: Producer, r: redis.Redis) -> None:
    receipt = producer.append_message(OWNER, "s1", "user", "hi there")
    assert receipt.owner == OWNER
    assert receipt.partition == keys.partition(OWNER, 16)
    [(log_id, fields)] = r.xrange(keys.log(receipt.partition, OWNER))
    assert log_id.decode() == receipt.log_id
    stored = decode_entry(OWNER, receipt.log_id, fields)
    assert stored.event == MessageAppended(role="user", content="hi there")
    assert stored.session == "s1"
    assert stored.eid
    [(feed_id, pointer)] = r.xrange(keys.feed(receipt.partition))
    assert feed_id.decode() == receipt.feed_id
    assert pointer == {b"o": OWNER.encode(), b"l": receipt.log_id.encode()}


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_owner_or_session_is_refused_and_nothing_lost(
    producer: Producer, r: redis.Redis, stored: None, bad: str
) -> None:
    before = _snapshot(r)
    with pytest.raises(InvalidIdError, match="owner"):
        producer.append_message(bad, "s1", "user", "x")
    with pytest.raises(InvalidIdError, match="session"):
        producer.append_message(OWNER, bad, "user", "x")
    assert _snapshot(r) == before


def _raw_append(r: redis.Redis, owner: str, p: int, *args: Any) -> Any:
    return r.fcall("ms_append", 2, f"ms:{{{p}}}:log:{owner}", f"ms:{{{p}}}:feed", *args)


P = keys.partition(OWNER, 16)


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("data", "{}", "ct", "json"), "field 'type' is required"),
        (("type", "state.saved"), "field 'data' is required"),
        (("type", "state.saved", "data", "{}", "ct", "xml"), "ct must be 'json' or 'msgpack'"),
        (("type", "state.saved", "data", "x" * 2000), "over max_event_bytes 1024"),
        (("type", "Bad Type", "data", "{}"), "type must be"),
        (("type", "state.saved", "data", "{}", "v", "0"), "v must be"),
        (("type", "state.saved", "data", "{}", "session", "a:b"), "session must be"),
        (("type", "state.saved", "data", "{}", "eid", "x y"), "eid must be"),
        (("type", "state.saved", "data", "{}", "colour", "red"), "unknown argument 'colour'"),
        (("type", "state.saved", "data"), "name/value pairs"),
    ],
)
def test_raw_bad_appends_get_clear_errors_and_lose_nothing(
    r: redis.Redis, producer: Producer, stored: None, args: tuple[Any, ...], reason: str
) -> None:
    for p in range(16):
        r.hset(keys.conf(p), "max_event_bytes", 1024)
    before = _snapshot(r)
    with pytest.raises(redis.ResponseError) as info:
        _raw_append(r, OWNER, P, *args)
    assert str(info.value).startswith("memstream: ")
    assert reason in str(info.value)
    assert _snapshot(r) == before


def test_partition_mismatch_is_refused(r: redis.Redis, producer: Producer, stored: None) -> None:
    before = _snapshot(r)
    wrong = (P + 1) % 16
    with pytest.raises(redis.ResponseError, match=f"belongs to partition {P}, keys name {wrong}"):
        _raw_append(r, OWNER, wrong, "type", "state.saved", "data", "{}", "ct", "json")
    with pytest.raises(redis.ResponseError, match="feed key must be"):
        r.fcall("ms_append", 2, keys.log(P, OWNER), keys.feed(wrong), "type", "a.b", "data", "x")
    with pytest.raises(redis.ResponseError, match="owner must be"):
        r.fcall("ms_append", 2, f"ms:{{{P}}}:log:a b", keys.feed(P), "type", "a.b", "data", "x")
    assert _snapshot(r) == before
    assert r.exists(keys.log(wrong, OWNER)) == 0


def test_oversized_payload_is_refused_before_sending(
    r: redis.Redis, deployed: str, stored: None
) -> None:
    for p in range(16):
        r.hset(keys.conf(p), "max_event_bytes", 512)
    r.hset(keys.META, "max_event_bytes", 512)
    before = _snapshot(r)
    with Producer.from_url(deployed) as small, pytest.raises(InvalidInputError) as info:
        small.append_message(OWNER, "s1", "user", "x" * 600)
    assert info.value.field == "data"
    assert "max_event_bytes 512" in str(info.value)
    assert _snapshot(r) == before


def test_wrong_payload_type_names_the_field(producer: Producer, r: redis.Redis) -> None:
    with pytest.raises(InvalidInputError) as info:
        producer.append_message(OWNER, "s1", "user", ["not", "text"])
    assert info.value.field == "content"
    with pytest.raises(InvalidInputError) as info:
        producer.save_state(OWNER, "not a dict")
    assert info.value.field == "state"
    assert r.exists(keys.log(P, OWNER)) == 0


def test_session_required_events_need_a_session(producer: Producer) -> None:
    with pytest.raises(InvalidInputError, match=r"session: is required for message\.appended"):
        producer.append(OWNER, MessageAppended(role="user", content="x"))


def test_not_initialised_deployment_is_a_clear_error(redis_url: str) -> None:
    with Producer.from_url(redis_url) as p, pytest.raises(NotInitialisedError, match="init"):
        p.append_message(OWNER, "s", "user", "x")


def test_retry_with_same_eid_returns_first_ids(producer: Producer, r: redis.Redis) -> None:
    first = producer.append(OWNER, StateSaved(state={"a": 1}), eid="job-42")
    again = producer.append(OWNER, StateSaved(state={"a": 2}), eid="job-42")
    assert (again.log_id, again.feed_id) == (first.log_id, first.feed_id)
    assert r.xlen(keys.log(P, OWNER)) == 1


def test_dropped_connection_retry_does_not_duplicate(
    deployed: str, r: redis.Redis, redis_server: Any
) -> None:
    proxy = DroppingProxy(redis_server.port)
    try:
        url = f"redis://127.0.0.1:{proxy.port}/0"
        with Producer.from_url(url, backoff_base=0.001) as producer:
            producer.append_message(OWNER, "s1", "user", "warm-up")
            proxy.arm(b"ms_append")
            receipt = producer.append_message(OWNER, "s1", "user", "important")
        assert proxy.dropped == 1
        log = r.xrange(keys.log(P, OWNER))
        assert len(log) == 2
        assert log[-1][0].decode() == receipt.log_id
        assert r.hget(keys.heads(P), OWNER) == receipt.log_id.encode()
    finally:
        proxy.close()


def test_append_many_is_ordered_and_complete(producer: Producer, r: redis.Redis) -> None:
    items = [(f"agent-{i % 5}", StepRecorded(action=f"step {i}")) for i in range(2500)]
    receipts = producer.append_many(items)
    assert len(receipts) == 2500
    for owner in {o for o, _ in items}:
        p = keys.partition(owner, 16)
        log = r.xrange(keys.log(p, owner))
        actions = [decode_entry(owner, i.decode(), f).event for i, f in log]
        assert actions == [e for o, e in items if o == owner]
        assert r.hget(keys.heads(p), owner) == log[-1][0]


def test_append_many_validates_everything_before_sending(
    producer: Producer, r: redis.Redis
) -> None:
    items: list[tuple[Any, ...]] = [
        (OWNER, StepRecorded(action="ok")),
        ("bad owner", StepRecorded(action="x")),
    ]
    with pytest.raises(InvalidIdError):
        producer.append_many(items)
    assert r.exists(keys.log(P, OWNER)) == 0


def test_append_many_reports_per_item_server_refusals(producer: Producer, r: redis.Redis) -> None:
    producer.append_many([(OWNER, StepRecorded(action="a"))])
    r.delete(keys.conf(P))  # this partition now refuses appends
    other = next(o for o in ("bob", "carol", "dave", "erin") if keys.partition(o, 16) != P)
    with pytest.raises(AppendManyError) as info:
        producer.append_many([(other, StepRecorded(action="b")), (OWNER, StepRecorded(action="c"))])
    assert info.value.receipts[0] is not None
    assert info.value.receipts[1] is None
    assert "not initialised" in str(info.value.errors[1])
    assert r.xlen(keys.log(P, OWNER)) == 1


def test_eight_threads_lose_nothing(producer: Producer, r: redis.Redis) -> None:
    per_thread = 5000

    def work(t: int) -> None:
        for i in range(per_thread):
            producer.append(OWNER, StepRecorded(action=f"{t}:{i}"))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log_key = keys.log(P, OWNER)
    assert r.xlen(log_key) == 8 * per_thread
    [(last_id, _)] = r.xrevrange(log_key, count=1)
    assert r.hget(keys.heads(P), OWNER) == last_id
    assert r.xlen(keys.feed(P)) == 8 * per_thread


async def test_async_producer_shares_the_core(deployed: str, r: redis.Redis) -> None:
    async with AsyncProducer.from_url(deployed) as producer:
        receipt = await producer.append_message(OWNER, "s1", "user", "async hi")
        again = await producer.append(OWNER, StateSaved(state={}), eid="same")
        twice = await producer.append(OWNER, StateSaved(state={}), eid="same")
        many = await producer.append_many([(OWNER, StepRecorded(action="x"))] * 3)
        with pytest.raises(InvalidIdError):
            await producer.append_message("no good", "s1", "user", "x")
    assert receipt.partition == P
    assert again == twice
    assert len(many) == 3
    assert r.xlen(keys.log(P, OWNER)) == 5


def test_secrets_are_redacted_before_they_leave(deployed: str, r: redis.Redis) -> None:
    with Producer.from_url(deployed, redact_emails=True) as producer:
        producer.append_message(
            OWNER, "s1", "user",
            "token Bearer abcdefghijklmnop123 at https://bob:hunter2@db.example.com mail bob@x.io",
        )  # fmt: skip
    raw = r.xrange(keys.log(P, OWNER))[0][1][b"data"]
    assert b"abcdefghijklmnop123" not in raw
    assert b"hunter2" not in raw
    assert b"bob@x.io" not in raw


def test_redaction_can_be_turned_off(deployed: str, r: redis.Redis) -> None:
    with Producer.from_url(deployed, redactor=Redactor.off()) as producer:
        producer.append_message(OWNER, "s1", "user", "Bearer abcdefghijklmnop123")
    assert b"abcdefghijklmnop123" in r.xrange(keys.log(P, OWNER))[0][1][b"data"]


def test_server_refusal_maps_to_append_rejected(producer: Producer, r: redis.Redis) -> None:
    producer.append_message(OWNER, "s1", "user", "x")
    r.hset(keys.conf(P), "max_event_bytes", 64)
    with pytest.raises(AppendRejectedError, match="over max_event_bytes 64"):
        producer.append_message(OWNER, "s1", "user", "y" * 100)


def test_redaction_that_breaks_an_id_field_is_refused(deployed: str, r: redis.Redis) -> None:
    from memstream.producers.events import EpisodeSaved

    producer = Producer.from_url(deployed, redact_emails=True)
    with producer, pytest.raises(InvalidInputError) as info:
        producer.append(OWNER, EpisodeSaved(episode_id="e1", task="t", tags=["bob@x.io"]))
    assert info.value.field.startswith("tags")
    assert r.exists(keys.log(P, OWNER)) == 0
