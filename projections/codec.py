"""How projection values are stored: msgpack after a fixed-width version prefix."""

from __future__ import annotations

import threading
from typing import Any

import msgpack

from .ops import VERSION_LEN, log_id_of

_local = threading.local()
"""One ``Packer`` per thread: ``msgpack.packb`` builds a new one (and its buffer) on every
call, which was about half the cost of packing a message body; a ``Packer`` is not safe
to share between threads, and a batch may be planned in a thread (workers/batch.py)."""


def pack(value: Any) -> bytes:
    """``value`` as msgpack (bin type for bytes), as :func:`unpack` reads it back.

    A value msgpack cannot hold raises as ``msgpack.packb`` would (``TypeError``,
    ``OverflowError``), and the packer's buffer starts clean again for the next call."""
    try:
        packer: msgpack.Packer = _local.packer
    except AttributeError:
        packer = _local.packer = msgpack.Packer(use_bin_type=True)
    return packer.pack(value)


def unpack(raw: bytes) -> Any:
    """Decode one msgpack value written by :func:`pack` (str keys and text as str)."""
    return msgpack.unpackb(raw, raw=False)


def split_versioned(raw: bytes) -> tuple[str, Any]:
    """``<version><msgpack>`` -> (log id, value): the layout of LWW fields and ZLOG members."""
    return log_id_of(raw[:VERSION_LEN].decode()), unpack(raw[VERSION_LEN:])
