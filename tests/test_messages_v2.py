"""Rich messages: ``message.appended`` v2 (id, tool calls, tool_call_id, additional_kwargs,
content parts), the v1 upcaster, and the history read model returning them."""

from __future__ import annotations

import time

import pytest
import redis

from memstream.producers import AsyncProducer, InvalidInputError
from memstream.producers.codec import encode
from memstream.producers.entry import StoredEvent, decode_entry
from memstream.producers.events_messages import MessageAppended, ToolCall
from memstream.producers.settings import Settings
from memstream.projections.history import History
from memstream.projections.reader import AsyncReader
from memstream.projections.testing import check_convergence
from tests.workers_util import running_worker

OWNER = "agent.ada"
CALL = {"name": "get_weather", "arguments": {"city": "Lisbon"}, "id": "call_1"}
PARTS = [{"type": "text", "text": "what is"}, {"type": "image_url", "image_url": {"url": "x"}}]


def test_v1_payload_upcasts_to_v2() -> None:
    raw = encode({"role": "user", "content": "hi", "name": "bob", "meta": {"k": 1}})
    event = decode_entry(
        OWNER, "1-0", {b"type": b"message.appended", b"v": b"1", b"data": raw, b"session": b"s1"}
    )
    msg = event.event
    assert isinstance(msg, MessageAppended) and event.version == 1
    assert (msg.content, msg.name, msg.meta) == ("hi", "bob", {"k": 1})
    assert msg.tool_calls == [] and msg.id is None and msg.tool_call_id is None


def test_v2_validation_names_the_field() -> None:
    assert MessageAppended.VERSION == 2
    MessageAppended(role="user", content=PARTS)
    with pytest.raises(ValueError, match="type"):
        MessageAppended(role="user", content=[{"text": "no type"}])
    with pytest.raises(ValueError, match="name"):
        MessageAppended.model_validate(
            {"role": "assistant", "content": "", "tool_calls": [{"arguments": {}}]}
        )
    assert MessageAppended(role="user", content=PARTS).text() == "what is"


async def test_rich_messages_round_trip_through_history(deployed: str) -> None:
    async with running_worker(deployed), AsyncProducer.from_url(deployed) as producer:
        await producer.append_message(OWNER, "s1", "user", PARTS, id="m1")
        await producer.append_message(
            OWNER,
            "s1",
            "assistant",
            "",
            id="m2",
            tool_calls=[CALL],
            additional_kwargs={"refusal": None, "model": "x"},
        )
        receipt = await producer.append_message(
            OWNER, "s1", "tool", "18 C", tool_call_id="call_1", name="get_weather"
        )
        with pytest.raises(InvalidInputError):
            await producer.append_message(OWNER, "s1", "user", [{"no": "type"}])
        async with AsyncReader.from_url(deployed) as reader:
            await reader.wait(receipt, timeout=30)
            got = [m.to_dict() for m in await reader.history(OWNER, "s1")]  # results are frozen
    for message in got:
        message.pop("log_id"), message.pop("ts")
    assert got == [
        {"role": "user", "content": PARTS, "id": "m1"},
        {
            "role": "assistant",
            "content": "",
            "id": "m2",
            "tool_calls": [CALL],
            "additional_kwargs": {"refusal": None, "model": "x"},
        },
        {"role": "tool", "content": "18 C", "tool_call_id": "call_1", "name": "get_weather"},
    ]


def test_v1_and_v2_messages_converge(r: redis.Redis, deployed: str) -> None:
    now = (int(time.time()) + 86_400) * 1000
    messages = [
        MessageAppended(role="user", content="plain v1 shape"),
        MessageAppended(role="assistant", content="", id="a", tool_calls=[ToolCall(**CALL)]),
        MessageAppended(role="tool", content="ok", tool_call_id="call_1"),
        MessageAppended(role="user", content=PARTS, additional_kwargs={"x": [1, 2]}),
    ]
    events = [
        StoredEvent(
            OWNER, f"{now - 9000 + i}-0", "message.appended", 1 if i == 0 else 2, m, session="s1"
        )
        for i, m in enumerate(messages)
    ]
    settings = Settings(history_cap=3, history_ttl_s=60)
    for order in ([3, 2, 1, 0], [1, 3, 0, 2]):
        check_convergence(
            r, [History()], events, order=order, duplicates=[2, 0], settings=settings, now_ms=now
        )
