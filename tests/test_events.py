from __future__ import annotations

import struct
from typing import Any, ClassVar

import pytest
from pydantic import ValidationError

from memstream.producers import events
from memstream.producers.codec import DecodeError, decode, encode
from memstream.producers.entry import decode_entry
from memstream.producers.events import EvidenceObserved, GenericEvent
from memstream.producers.events_messages import MessageAppended
from memstream.producers.events_tensors import TensorRecorded


def _fields(event: events.Event, ct: str = "msgpack", **extra: bytes) -> dict[bytes, bytes]:
    data = encode(event.payload(json_safe=ct == "json"), ct)
    out = {b"type": event.event_type.encode(), b"v": b"1", b"ct": ct.encode(), b"data": data}
    out.update({k.encode(): v for k, v in extra.items()})
    return out


@pytest.mark.parametrize("ct", ["msgpack", "json"])
def test_codec_round_trips_every_shape(ct: str) -> None:
    tensor = TensorRecorded(shape=[2, 2], data=struct.pack("4f", 1, 2, 3, 4), meta={"k": [1, 2]})
    msg = MessageAppended(role="user", content="h\u00e9llo", meta={"n": 1.5})
    for event in (tensor, msg):
        stored = decode_entry("alice", "1-0", _fields(event, ct, session=b"s1"))
        assert stored.event == event
        assert stored.known
        assert stored.session == "s1"


def test_unknown_type_stays_readable_as_generic() -> None:
    raw = encode({"x": 1})
    stored = decode_entry("alice", "5-1", {b"type": b"robot.moved", b"data": raw})
    assert isinstance(stored.event, GenericEvent)
    assert stored.event.data == {"x": 1}
    assert not stored.known
    assert stored.ts_ms == 5


def test_newer_version_of_a_known_type_is_generic_not_misread() -> None:
    raw = encode({"role": "user", "content": "x", "new_field": 1})
    fields = {b"type": b"message.appended", b"v": b"7", b"data": raw, b"session": b"s"}
    stored = decode_entry("alice", "5-1", fields)
    assert isinstance(stored.event, GenericEvent)
    assert stored.version == 7


def test_upcaster_upgrades_old_payloads_on_read() -> None:
    @events.register
    class Greeting(events.Event):
        TYPE: ClassVar[str] = "test.greeting"
        VERSION: ClassVar[int] = 3
        text: str
        loud: bool

    @events.upcaster("test.greeting", from_version=1)
    def _v1(d: dict[str, Any]) -> dict[str, Any]:
        return {"text": d["msg"]}

    @events.upcaster("test.greeting", from_version=2)
    def _v2(d: dict[str, Any]) -> dict[str, Any]:
        return {**d, "loud": d["text"].isupper()}

    stored = decode_entry(
        "a", "1-0", {b"type": b"test.greeting", b"v": b"1", b"data": encode({"msg": "HI"})}
    )
    assert stored.event == Greeting(text="HI", loud=True)


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({b"data": encode({})}, "type: is missing"),
        ({b"type": b"state.saved"}, "data: is missing"),
        ({b"type": b"state.saved", b"data": b"\xc1\xc1"}, "not valid msgpack"),
        ({b"type": b"state.saved", b"data": b"[1]", b"ct": b"json"}, "must decode to a map"),
        ({b"type": b"state.saved", b"data": encode({}), b"ct": b"xml"}, "ct: must be"),
        ({b"type": b"state.saved", b"data": encode({"state": 3})}, "data.state"),
        (
            {b"type": b"message.appended", b"data": encode({"role": "u", "content": "x"})},
            "session: is required",
        ),
        ({b"type": b"state.saved", b"v": b"x", b"data": encode({})}, "v: must be"),
    ],
)
def test_bad_entries_raise_readable_decode_errors(fields: dict[bytes, bytes], needle: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_entry("alice", "1-0", fields)
    assert needle in str(info.value)


def test_pydantic_errors_name_the_field() -> None:
    with pytest.raises(ValidationError) as info:
        MessageAppended(role="user", content=42)
    assert "content" in str(info.value)


@pytest.mark.parametrize("weight", [0.0, -1.0, float("nan"), float("inf")])
def test_evidence_weight_must_be_positive_and_finite(weight: float) -> None:
    with pytest.raises(ValidationError, match="weight"):
        EvidenceObserved(scenario="s", path=["a"], variable="v", outcome="o", weight=weight)


def test_tensor_size_must_match_shape() -> None:
    with pytest.raises(ValidationError, match="needs 16"):
        TensorRecorded(shape=[4], data=b"\x00" * 8)


def test_decode_rejects_non_map() -> None:
    with pytest.raises(DecodeError):
        decode(encode({"a": 1})[:1], "msgpack")
