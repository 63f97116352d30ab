"""decode_entry's msgpack shortcut (producers/entry.py) accepts and refuses exactly what
the codec does: the nesting bound holds, and a bad payload gets the codec's reason."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from memstream.producers.codec import MAX_DEPTH, DecodeError, decode
from memstream.producers.entry import _payload, decode_entry


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


def _reason(raw: bytes, ct: str = "msgpack") -> str:
    with pytest.raises(DecodeError) as caught:
        _payload(raw, ct)
    return str(caught.value)


@pytest.mark.parametrize("depth", [1, 2, MAX_DEPTH])
def test_payloads_up_to_the_bound_decode(depth: int) -> None:
    raw = msgpack.packb(_nested(depth))
    assert _payload(raw, "msgpack") == decode(raw, "msgpack") == _nested(depth)


def test_a_payload_past_the_bound_is_refused_with_the_codecs_reason() -> None:
    raw = msgpack.packb(_nested(MAX_DEPTH + 1))
    with pytest.raises(DecodeError) as codec:
        decode(raw, "msgpack")
    assert _reason(raw) == str(codec.value)
    assert "deeper than" in _reason(raw)


def test_container_bytes_inside_strings_only_cost_the_shortcut() -> None:
    # Many bytes that could open a container, all inside text: shallow, so it decodes
    # (through the codec's walk), as before.
    data = {"content": "\x90\x80" * 200, "meta": {"a": [1, 2]}}
    raw = msgpack.packb(data)
    assert _payload(raw, "msgpack") == data


@pytest.mark.parametrize(
    "raw",
    [b"\xc1", msgpack.packb([1, 2]), msgpack.packb({"a": 1}) + b"\x01", msgpack.packb({1: 2})],
    ids=["invalid", "not-a-map", "extra-data", "int-key"],
)
def test_bad_msgpack_gets_the_codecs_reason(raw: bytes) -> None:
    with pytest.raises(DecodeError) as codec:
        decode(raw, "msgpack")
    assert _reason(raw) == str(codec.value)


def test_json_goes_through_the_codec() -> None:
    assert _payload(b'{"a": [1]}', "json") == {"a": [1]}
    assert "deeper than" in _reason(b'{"a":' * 70 + b"1" + b"}" * 70, "json")


def test_decode_entry_uses_it() -> None:
    fields = {
        b"type": b"message.appended",
        b"data": msgpack.packb({"role": "user", "content": "hi"}),
        b"session": b"s1",
    }
    event = decode_entry("agent.a", "1700000000000-1", fields)
    assert event.type == "message.appended" and event.session == "s1"
    fields[b"data"] = msgpack.packb({"role": "user", "content": "hi", "meta": _nested(64)})
    with pytest.raises(DecodeError, match="deeper than"):
        decode_entry("agent.a", "1700000000000-1", fields)
