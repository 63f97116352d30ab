"""``codec.encode`` reuses one msgpack Packer per thread: its bytes must be packb's, after
a failed encode too (a failed pack must not leave bytes in the reused buffer)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from memstream.producers.codec import MAX_DEPTH, decode, encode
from memstream.producers.errors import InvalidInputError


def payload(i: int) -> dict[str, Any]:
    return {"role": "user", "content": f"message {i} " * (i % 50), "meta": {"n": i, "b": b"\0"}}


def test_bytes_are_packb_bytes_even_after_a_failed_encode() -> None:
    with pytest.raises(TypeError):
        encode({"bad": object()})
    for i in range(100):
        assert encode(payload(i)) == msgpack.packb(payload(i), use_bin_type=True)


def nested(depth: int) -> dict[str, Any]:
    """A payload of ``depth`` levels of maps (the payload itself is level 1)."""
    out: dict[str, Any] = {}
    node = out
    for _ in range(depth - 1):
        node["x"] = {}
        node = node["x"]
    return out


@pytest.mark.parametrize("ct", ["msgpack", "json"])
def test_depth_limit_holds_whatever_the_encoded_bytes_look_like(ct: Any) -> None:
    # encode() walks the value only when its output has more than MAX_DEPTH container
    # bytes; the limit must be the same as the walk's on both sides of that shortcut.
    encode(nested(MAX_DEPTH), ct)
    with pytest.raises(InvalidInputError, match="nests"):
        encode(nested(MAX_DEPTH + 1), ct)
    # Deeper than the encoders themselves can go: still the depth error, not theirs.
    with pytest.raises(InvalidInputError, match="nests"):
        encode(nested(5000), ct)
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    with pytest.raises(InvalidInputError, match="nests"):
        encode(cyclic, ct)
    # Many container bytes but shallow (text holding them, many sibling lists): accepted,
    # and the bytes are the encoder's own.
    wide = {"rows": [[i] for i in range(500)], "text": "[{" * 300 + "\u0090\u00dc" * 300}
    raw = encode(wide, ct)
    assert decode(raw, ct) == wide


def test_an_unencodable_shallow_value_raises_the_encoders_error() -> None:
    with pytest.raises(TypeError):
        encode({"bad": {1, 2}})
