"""Change notifications: published by ms_apply only when the XACK gate passes, one compact
record per applied event, on the partition's sharded channel; Reader.subscribe yields them."""

from __future__ import annotations

import time
from typing import Any

import msgpack
import redis

from memstream.producers import AsyncProducer, Producer, keys
from memstream.producers.entry import decode_entry
from memstream.producers.settings import Settings
from memstream.projections.base import ApplyContext
from memstream.projections.notify import RESET, Change, decode, encode
from memstream.projections.ops import apply_command
from memstream.projections.reader import AsyncReader
from memstream.projections.registry import default_projections
from memstream.workers.plan import Planner
from memstream.workers.replay import replay_all
from memstream.workers.replay_owner import replay_owner
from tests.workers_util import running_worker


def same_partition(owner: str, n: int = 16) -> str:
    p = keys.partition(owner, n)
    return next(f"other{i}" for i in range(1000) if keys.partition(f"other{i}", n) == p)


def drain(pubsub: redis.client.PubSub, wait_s: float = 0.3) -> list[Change]:
    out, deadline = [], time.monotonic() + wait_s
    while time.monotonic() < deadline:
        message = pubsub.get_sharded_message(timeout=0.05)
        if message and message["type"] == "smessage":
            change = decode(message["data"])
            assert change is not None, message
            out.append(change)
    return out


async def test_subscribe_yields_records_of_its_owners_only(deployed: str) -> None:
    other = same_partition("alice")  # shares alice's channel: must be filtered out
    async with (
        AsyncProducer.from_url(deployed) as producer,
        AsyncReader.from_url(deployed) as reader,
        running_worker(deployed),
        reader.subscribe(["alice"]) as sub,
    ):
        await producer.save_state(other, {"x": 1})
        receipt = await producer.append_message("alice", "s1", "user", "hi")
        first = await sub.get(timeout=5)
        assert first is not None
        assert first == Change("alice", "message.appended", receipt.log_id, 1)
        assert await sub.get(timeout=0.3) is None  # other's change was filtered


def test_duplicate_delivery_publishes_once_and_expired_event_not_at_all(
    r: redis.Redis, deployed: str
) -> None:
    producer = Producer.from_url(deployed)
    receipt = producer.save_state("alice", {"v": 1})
    producer.close()
    p = receipt.partition
    feed, group = keys.feed(p), "v1"
    rows = r.xreadgroup(group, "c1", {feed: ">"})
    feed_id = rows[0][1][0][0].decode()
    log_fields = r.xrange(keys.log(p, "alice"), receipt.log_id, receipt.log_id)[0][1]
    event = decode_entry("alice", receipt.log_id, log_fields)
    planner = Planner(default_projections(), Settings(), max_deliveries=5)
    ctx = ApplyContext(keys.Projection(p, 1), Settings(), int(time.time() * 1000))
    ops = planner.event_writes(event, ctx).ops
    assert ops[-1][0] == "SPUB" and ops[-1][1] == keys.changes(p)
    body = msgpack.unpackb(ops[-1][2])
    assert body == {"o": "alice", "t": "state.saved", "l": receipt.log_id, "v": 1}

    pubsub = r.pubsub()  # type: ignore[no-untyped-call]
    pubsub.ssubscribe(keys.changes(p))
    drain(pubsub, 0.1)
    command = apply_command(feed, group, [(feed_id, ops)])
    call: Any = r.execute_command
    assert call(*command) == 1
    assert call(*command) == 0  # redelivered: XACK returns 0, no writes
    assert [c.log_id for c in drain(pubsub)] == [receipt.log_id]

    # An event whose TTL has passed writes nothing, so it announces nothing.
    late = ApplyContext(keys.Projection(p, 1), Settings(state_ttl_s=1), event.ts_ms + 5000)
    assert planner.event_writes(event, late).ops == []
    pubsub.close()


def test_replay_does_not_republish_history(r: redis.Redis, deployed: str) -> None:
    with Producer.from_url(deployed) as producer:
        for i in range(5):
            producer.save_state("alice", {"v": i})
    p = keys.partition("alice", 16)
    pubsub = r.pubsub()  # type: ignore[no-untyped-call]
    pubsub.ssubscribe(keys.changes(p))
    drain(pubsub, 0.1)
    replay_all(r, Settings.from_url(deployed), catchup_timeout_s=0.1, grace_s=0.0)
    assert drain(pubsub) == []
    pubsub.close()


def test_owner_rebuild_tells_caching_readers_to_drop_the_owner(
    r: redis.Redis, deployed: str
) -> None:
    # replay --owner rewrites the owner's keys outside ms_apply: one reset record says so.
    with Producer.from_url(deployed) as producer:
        producer.save_state("alice", {"v": 1})
    p = keys.partition("alice", 16)
    pubsub = r.pubsub()  # type: ignore[no-untyped-call]
    pubsub.ssubscribe(keys.changes(p))
    drain(pubsub, 0.1)
    replay_owner(r, "alice", Settings.from_url(deployed))
    assert drain(pubsub) == [Change("alice", RESET, "0-0", 1)]
    pubsub.close()


def test_blocking_reader_subscribe(deployed: str) -> None:
    from memstream.projections.reader import Reader

    with Reader.from_url(deployed) as reader, reader.subscribe(["alice"]) as sub:
        assert sub.get(timeout=0.2) is None
        with Producer.from_url(deployed) as producer:
            receipt = producer.save_state("alice", {"v": 1})
        # No worker runs: publish the record as ms_apply would, from the same channel.
        r = redis.Redis.from_url(deployed)
        r.spublish(keys.changes(receipt.partition), encode(Change("alice", "t", "1-0", 1)))
        r.close()
        assert sub.get(timeout=5) == Change("alice", "t", "1-0", 1)
