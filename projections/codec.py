"""How projection values are stored: msgpack after a fixed-width version prefix."""

from __future__ import annotations

from typing import Any

import msgpack

from .ops import VERSION_LEN, log_id_of


def pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def unpack(raw: bytes) -> Any:
    return msgpack.unpackb(raw, raw=False)


def split_versioned(raw: bytes) -> tuple[str, Any]:
    """``<version><msgpack>`` -> (log id, value): the layout of LWW fields and ZLOG members."""
    return log_id_of(raw[:VERSION_LEN].decode()), unpack(raw[VERSION_LEN:])
