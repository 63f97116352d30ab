"""``codec.encode`` reuses one msgpack Packer per thread: its bytes must be packb's, after
a failed encode too (a failed pack must not leave bytes in the reused buffer)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from memstream.producers.codec import encode


def payload(i: int) -> dict[str, Any]:
    return {"role": "user", "content": f"message {i} " * (i % 50), "meta": {"n": i, "b": b"\0"}}


def test_bytes_are_packb_bytes_even_after_a_failed_encode() -> None:
    with pytest.raises(TypeError):
        encode({"bad": object()})
    for i in range(100):
        assert encode(payload(i)) == msgpack.packb(payload(i), use_bin_type=True)
