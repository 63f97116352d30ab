"""How a vector is stored: int8 with one float32 scale per vector, after its expiry.

Payload = ``<int64 expiry ms><float32 scale><dimension int8>`` (little-endian): 268 bytes
for WordLlama's 256 dimensions, against 512 for float16 and 1,024 for float32. The scale
is the largest absolute component / 127, so each component is off by at most half a
step; bench/retrieval.py measures what that costs in recall against float32 (the figure
is in docs/benchmarks.md). An empty payload is a delete's tombstone.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

TOMBSTONE = b""
HEAD = struct.Struct("<qf")
"""Expiry (ms) and scale, before the int8 components."""


def encode(vector: Any, expiry_ms: int) -> bytes:
    """A float vector as the stored payload (int8 + scale), with the item's expiry."""
    import numpy as np

    v = np.asarray(vector, dtype=np.float32)
    peak = float(np.max(np.abs(v))) if v.size else 0.0
    scale = peak / 127 if peak > 0 else 1.0
    q = np.clip(np.rint(v / scale), -127, 127).astype(np.int8)
    body: bytes = q.tobytes()
    return HEAD.pack(expiry_ms, scale) + body


def decode_many(
    payloads: Sequence[bytes], dimension: int, skip: int = 0
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Live payloads (no tombstones, each ``skip + HEAD.size + dimension`` bytes, whose
    first ``skip`` bytes are ignored: a stored value's version) as unit rows (float32,
    ready for a dot product) and their expiries."""
    import numpy as np

    n, width = len(payloads), skip + HEAD.size + dimension
    if n == 0:
        return np.zeros((0, dimension), np.float32), np.zeros(0, np.int64)
    raw = np.frombuffer(b"".join(payloads), dtype=np.uint8).reshape(n, width)[:, skip:]
    expiry = raw[:, :8].copy().view("<i8").reshape(n)
    scale = raw[:, 8:12].copy().view("<f4").reshape(n, 1)
    rows = raw[:, 12:].view(np.int8).astype(np.float32) * scale
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    unit: npt.NDArray[np.float32] = np.divide(rows, norms, out=np.zeros_like(rows),
                                              where=norms > 0)  # fmt: skip
    return unit, expiry.astype(np.int64)
