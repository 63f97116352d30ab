"""The hot history read (``history(last=...)``): typed messages built straight from the
stored members, single-command reads sent without a pipeline, and the same results,
errors and cache behaviour as the general plan runner."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from memstream.producers import AsyncProducer, PermissionDeniedError, Settings, keys
from memstream.projections import AsyncReader, Message, Reader
from memstream.projections.base import then
from memstream.projections.codec import pack
from memstream.projections.history import read_history, read_messages
from memstream.projections.ops import sortable
from memstream.projections.results import message_of
from tests.workers_util import running_worker

OWNER = "agent.hist"
CALL = {"name": "get_weather", "arguments": {"city": "Lisbon"}, "id": "call_1"}

BODIES: list[dict[str, Any]] = [
    {"role": "user", "content": "hi", "ts": 5},
    {"role": "user", "content": "hi", "ts": 5, "name": "bob", "meta": {"k": [1, 2]}},
    {"role": "assistant", "content": [{"type": "text", "text": "x"}], "ts": 6, "id": "m1",
     "tool_calls": [CALL], "tool_call_id": "call_0", "additional_kwargs": {"refusal": None}},
    {"role": "user", "content": "from a newer writer", "ts": 7, "lang": "pt"},
]  # fmt: skip


@pytest.mark.parametrize("body", BODIES)
def test_message_of_builds_what_message_of_dict_builds(body: dict[str, Any]) -> None:
    fast, slow = message_of("12-3", dict(body)), Message.of({"log_id": "12-3", **body})
    assert type(fast) is Message
    assert fast == slow and fast.to_dict() == slow.to_dict() and repr(fast) == repr(slow)
    for field in Message.__match_args__:
        assert getattr(fast, field) == getattr(slow, field)
    assert "lang" not in fast  # an unknown key is dropped, as Message.of drops it
    with pytest.raises(AttributeError):
        fast.role = "x"  # still frozen


def test_message_of_a_body_missing_a_field_raises_as_message_of() -> None:
    with pytest.raises(TypeError):
        Message.of({"log_id": "1-0", "role": "user"})
    with pytest.raises(TypeError):
        message_of("1-0", {"role": "user"})


@pytest.mark.topologies  # a Cluster client keeps execute_command
async def test_both_readers_return_what_the_dict_read_returns(deployed: str) -> None:
    async with running_worker(deployed), AsyncProducer.from_url(deployed) as producer:
        for i in range(30):
            await producer.append_message(OWNER, "s1", "user", f"m{i}", meta={"i": i})
        await producer.append_message(
            OWNER, "s1", "assistant", "", id="m2", tool_calls=[CALL],
            additional_kwargs={"model": "x"},
        )  # fmt: skip
        receipt = await producer.append_message(OWNER, "s1", "tool", "sunny", tool_call_id="c")
        async with AsyncReader.from_url(deployed) as ard:
            await ard.wait(receipt, timeout=20)
            pk = await ard._pk(OWNER)
            want = Message.many(await ard.run(read_history(pk, OWNER, "s1", 20)))
            got = await ard.history(OWNER, "s1", last=20)
            assert await ard.run(read_messages(pk, OWNER, "s1", 20)) == want
        with Reader.from_url(deployed) as rd, Reader.from_url(deployed, cache=True) as cached:
            blocking = rd.history(OWNER, "s1", last=20)
            assert cached.history(OWNER, "s1", last=20) == blocking
            assert cached.history(OWNER, "s1", last=20) == blocking  # a hit, if subscribed
    assert len(want) == 20 and got == want and blocking == want
    assert all(type(m) is Message for m in [*got, *blocking])
    assert [m.content for m in got[:3]] == ["m12", "m13", "m14"]
    assert got[-2].tool_calls == [CALL] and got[-1].tool_call_id == "c"
    assert got[-1].to_dict() == {k: v for k, v in got[-1].items()}
    assert got[0].meta == {"i": 12} and got[0].meta is not blocking[0].meta  # fresh objects


@pytest.mark.topologies  # a Cluster client keeps execute_command
async def test_a_missing_session_reads_empty_on_both_readers(deployed: str) -> None:
    async with AsyncReader.from_url(deployed) as ard:
        assert await ard.history(OWNER, "none", last=5) == []
    with Reader.from_url(deployed) as rd:
        assert rd.history(OWNER, "none", last=5) == []


async def test_a_refused_single_command_read_is_wrapped_on_both_readers(
    deployed: str, r: redis.Redis
) -> None:
    # May read the deployment but not the projections: ZRANGE is refused (NOPERM), sent
    # on its own, without a pipeline; both readers raise our error, not redis-py's.
    r.acl_setuser(
        "viewer2", enabled=True, passwords=["+pw"], keys=["ms:meta", "ms:*:conf"],
        commands=["+hgetall", "+hget", "+ping", "+client"],
    )  # fmt: skip
    try:
        settings = Settings.from_url(deployed, username="viewer2", password="pw")
        async with AsyncReader.from_settings(settings) as ard:
            with pytest.raises(PermissionDeniedError):
                await ard.history(OWNER, "s1")
        with Reader(settings) as rd, pytest.raises(PermissionDeniedError):
            rd.history(OWNER, "s1")
    finally:
        r.acl_deluser("viewer2")


@pytest.mark.parametrize(
    "log_id", ["1700000000000-0", "1-12", "0-1", "0-0", "10-0", "1700000000000-1234567890"]
)
def test_a_member_reads_back_its_log_id(log_id: str) -> None:
    member = sortable(log_id).encode() + pack({"role": "user", "content": "c", "ts": 1})
    pk = keys.Projection(0, 1)
    typed = read_messages(pk, OWNER, "s1", 1).parse([[member], None])
    plain = read_history(pk, OWNER, "s1", 1).parse([[member], None])
    assert isinstance(typed, list) and isinstance(plain, list)
    assert typed[0].log_id == plain[0]["log_id"] == log_id


def test_only_the_history_plan_skips_the_archived_value_walk() -> None:
    pk = keys.Projection(0, 1)
    assert read_messages(pk, OWNER, "s1", 20).archived is False  # messages are never archived
    assert read_history(pk, OWNER, "s1", 20).archived is True
    # A composed plan may read anything after: the walk is back on.
    assert then(read_messages(pk, OWNER, "s1", 20), len).archived is True


def test_a_member_that_is_not_a_message_raises_as_the_dict_read_did() -> None:
    pk = keys.Projection(0, 1)
    member = sortable("5-0").encode() + pack([1, 2, 3])  # not a map
    with pytest.raises(TypeError):
        read_messages(pk, OWNER, "s1", 1).parse([[member], None])
