"""Payload codec: msgpack (the Python default) and JSON (the easy path for other languages)."""

from __future__ import annotations

import json
import threading
from typing import Any, Literal

import msgpack

from .errors import InvalidInputError

ContentType = Literal["msgpack", "json"]
CONTENT_TYPES: tuple[ContentType, ...] = ("msgpack", "json")

MAX_DEPTH = 64
"""Deepest nesting of maps and lists a payload may have (the payload map is level 1).
``ms_append`` refuses deeper data, the producer refuses to send it, and every reader of
raw entries reports it as undecodable: deep data makes recursive code (JSON, pydantic,
printing) fail with RecursionError instead of an error that names the entry."""


class DecodeError(InvalidInputError):
    """A stored payload could not be decoded; ``rule`` is the readable reason."""


def depth_of(value: Any, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of maps and lists in ``value`` (a scalar is 0), counted without
    recursion, one level at a time; stops counting once past ``limit``."""
    level = [value] if isinstance(value, _CONTAINERS) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return depth
        children: list[Any] = []
        for item in level:
            values = item.values() if isinstance(item, dict) else item
            children += [c for c in values if isinstance(c, _CONTAINERS)]
        level = children
    return depth


_CONTAINERS = (dict, list, tuple)


def check_depth(value: Any, field: str = "data") -> None:
    """Raise :class:`InvalidInputError` when ``value`` nests deeper than MAX_DEPTH."""
    if depth_of(value) > MAX_DEPTH:
        raise InvalidInputError(field, f"nests maps and lists deeper than {MAX_DEPTH} levels")


_PACKERS = threading.local()


def packb(value: Any) -> bytes:
    """``value`` as msgpack (bin type for bytes), with one reused ``Packer`` per thread.

    ``msgpack.packb`` builds a Packer and its buffer on every call, which cost three times
    the packing of a chat message; a Packer is not thread-safe (a batch may be planned in a
    thread), hence one per thread. A value msgpack cannot hold raises as ``packb`` would
    (``TypeError``, ``OverflowError``) and the buffer starts clean for the next call."""
    try:
        packer: msgpack.Packer = _PACKERS.packer
    except AttributeError:
        packer = _PACKERS.packer = msgpack.Packer(use_bin_type=True)
    out: bytes = packer.pack(value)
    return out


NOT_OPENERS = bytes(b for b in range(256) if not (0x80 <= b <= 0x9F or 0xDC <= b <= 0xDF))
"""Every byte but those that can start a msgpack map or array (fixmap, fixarray, array
16/32, map 16/32)."""

_NOT_JSON_OPENERS = bytes(b for b in range(256) if b not in b"[{")


def encode(data: dict[str, Any], ct: ContentType = "msgpack") -> bytes:
    """Encode a payload. JSON callers must pass blobs already as base64 text.

    Data nested deeper than :data:`MAX_DEPTH` is refused (``ms_append`` would refuse it)."""
    if ct == "msgpack":
        raw, openers = _encoded(packb, data), NOT_OPENERS
    elif ct == "json":
        raw, openers = _encoded(_json_bytes, data), _NOT_JSON_OPENERS
    else:
        raise InvalidInputError("ct", "must be 'json' or 'msgpack'", ct)
    # Each level of nesting needs its own container byte in the output, so output with at
    # most MAX_DEPTH of them cannot nest deeper: the walk of the value (a tenth of the
    # client work of a chat message) runs only for output that might.
    if len(raw.translate(None, openers)) > MAX_DEPTH:
        check_depth(data)
    return raw


def _json_bytes(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def _encoded(dump: Any, data: dict[str, Any]) -> bytes:
    """``dump(data)``; a value too deep to encode at all (the encoders' own recursion
    limits) is refused as too deep, as it was before encoding was tried."""
    try:
        out: bytes = dump(data)
    except (ValueError, TypeError, OverflowError, RecursionError):
        check_depth(data)
        raise
    return out


def decode(raw: bytes, ct: str) -> dict[str, Any]:
    """Decode a stored payload into a dict; anything else is a :class:`DecodeError`."""
    try:
        if ct == "msgpack":
            value = msgpack.unpackb(raw, raw=False, strict_map_key=True)
        elif ct == "json":
            value = json.loads(raw)
        else:
            raise DecodeError("ct", "must be 'json' or 'msgpack'", ct)
    except DecodeError:
        raise
    except msgpack.StackError as e:  # its message is empty
        raise DecodeError("data", f"not valid msgpack: nested too deep ({e!r})") from e
    except RecursionError as e:
        raise DecodeError("data", f"not valid {ct}: nested too deep") from e
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError) as e:
        raise DecodeError("data", f"not valid {ct}: {str(e)[:200] or repr(e)}") from e
    if not isinstance(value, dict):
        raise DecodeError("data", f"must decode to a map, got {type(value).__name__}")
    if depth_of(value) > MAX_DEPTH:
        raise DecodeError("data", f"nests maps and lists deeper than {MAX_DEPTH} levels")
    return value
