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
    payloads: Sequence[bytes], dimension: int, skip: int = 0, out: Any = None
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Live payloads (no tombstones, each ``skip + HEAD.size + dimension`` bytes, whose
    first ``skip`` bytes are ignored: a stored value's version) as unit rows (float32,
    ready for a dot product; written into ``out``, shape ``(n, dimension)``, when given)
    and their expiries. The scale is not applied: a row divided by its own norm is the
    same unit vector with or without it, and skipping it saves a pass over 100 MB at
    100,000 rows (a whole load)."""
    import numpy as np

    n, width = len(payloads), skip + HEAD.size + dimension
    if n == 0:
        return np.zeros((0, dimension), np.float32), np.zeros(0, np.int64)
    raw = np.frombuffer(b"".join(payloads), dtype=np.uint8).reshape(n, width)[:, skip:]
    expiry = raw[:, :8].copy().view("<i8").reshape(n)
    rows: npt.NDArray[np.float32] = np.empty((n, dimension), np.float32) if out is None else out
    rows[...] = raw[:, HEAD.size :].view(np.int8)
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))[:, None]
    np.divide(rows, norms, out=rows, where=norms > 0)  # a zero vector stays zero
    return rows, expiry.astype(np.int64)
