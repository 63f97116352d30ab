"""Log segments: an owner's consecutive log entries, zstd-compressed msgpack.

Format (version 1): ``zstd(msgpack([1, owner, [[id, [k1, v1, k2, v2, ...]], ...]]))``.
Each entry keeps its stream id and its fields exactly as stored (names and values as
bytes, in stream order), so a read-through or a replay decodes it like a hot entry.
The manifest records the compressed size and sha256; :func:`decode` checks both before
it trusts a byte.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import msgpack
import zstandard

from .archive import sha256
from .errors import CorruptSegmentError

FORMAT = 1
LEVEL = 3
"""zstd level 3 (its default): chat text compresses about as well as at level 9 and
several times faster, and tiering throughput is what an operator waits on."""

Fields = Mapping[bytes, bytes]
Entry = tuple[str, dict[bytes, bytes]]
Row = tuple[str, list[bytes]]
"""An entry as a segment holds it: id and flat field list (names and values alternate)."""

_local = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    # A zstd context is not thread-safe; one per thread is cheap.
    c: zstandard.ZstdCompressor | None = getattr(_local, "c", None)
    if c is None:
        c = _local.c = zstandard.ZstdCompressor(level=LEVEL)
    return c


def _decompressor() -> zstandard.ZstdDecompressor:
    d: zstandard.ZstdDecompressor | None = getattr(_local, "d", None)
    if d is None:
        d = _local.d = zstandard.ZstdDecompressor()
    return d


def pack_entry(log_id: str, fields: Fields) -> list[object]:
    flat: list[bytes] = []
    for k, v in fields.items():
        flat.append(k)
        flat.append(v)
    return [log_id, flat]


def as_entry(row: Row) -> Entry:
    """A segment row as hot reads give entries: (id, {name: value})."""
    it = iter(row[1])
    return row[0], dict(zip(it, it, strict=True))


@dataclass(frozen=True, slots=True)
class Encoded:
    data: bytes
    raw_size: int
    sha256: str


def encode(owner: str, packed: Sequence[list[object]]) -> Encoded:
    """Compress entries already turned into ``[id, flat fields]`` by :func:`pack_entry`."""
    raw = msgpack.packb([FORMAT, owner, list(packed)], use_bin_type=True)
    data = _compressor().compress(raw)
    return Encoded(data, len(raw), sha256(data))


def check(name: str, data: bytes, *, size: int, digest: str) -> None:
    """Raise :class:`CorruptSegmentError` naming the object unless ``data`` has the
    recorded size and sha256."""
    if len(data) != size:
        raise CorruptSegmentError(
            f"segment {name} is {len(data)} bytes, the manifest says {size}", name
        )
    if sha256(data) != digest:
        raise CorruptSegmentError(f"segment {name} fails its sha256 check", name)


def decode(name: str, data: bytes, *, size: int, digest: str, owner: str) -> list[Row]:
    """The rows of segment ``name``, in log order; :class:`CorruptSegmentError` naming
    the object when its size, sha256 or contents are not what the manifest recorded.
    Rows stay flat: readers turn only the entries they return into dicts."""
    check(name, data, size=size, digest=digest)
    try:
        fmt, who, rows = msgpack.unpackb(
            _decompressor().decompress(data), raw=False, use_list=True, strict_map_key=False
        )
    except (zstandard.ZstdError, ValueError, TypeError) as e:
        raise CorruptSegmentError(f"segment {name} does not decode: {e}", name) from e
    if fmt != FORMAT or who != owner:
        raise CorruptSegmentError(
            f"segment {name} is format {fmt} of owner {who!r}, expected {FORMAT} of {owner!r}",
            name,
        )
    return [(log_id, flat) for log_id, flat in rows]
