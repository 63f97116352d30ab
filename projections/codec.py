"""How projection values are stored: msgpack after a fixed-width version prefix."""

from __future__ import annotations

from typing import Any

import msgpack

from memstream.producers.codec import packb

from .ops import VERSION_LEN, log_id_of


def pack(value: Any) -> bytes:
    """``value`` as msgpack (bin type for bytes), as :func:`unpack` reads it back
    (:func:`memstream.producers.codec.packb`: one reused Packer per thread)."""
    return packb(value)


def unpack(raw: bytes) -> Any:
    """Decode one msgpack value written by :func:`pack` (str keys and text as str)."""
    return msgpack.unpackb(raw, raw=False)


def split_versioned(raw: bytes) -> tuple[str, Any]:
    """``<version><msgpack>`` -> (log id, value): the layout of LWW fields and ZLOG members."""
    return log_id_of(raw[:VERSION_LEN].decode()), unpack(raw[VERSION_LEN:])
