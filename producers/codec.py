"""Payload codec: msgpack (the Python default) and JSON (the easy path for other languages)."""

from __future__ import annotations

import json
from typing import Any, Literal

import msgpack

from .errors import InvalidInputError

ContentType = Literal["msgpack", "json"]
CONTENT_TYPES: tuple[ContentType, ...] = ("msgpack", "json")


class DecodeError(InvalidInputError):
    """A stored payload could not be decoded; ``rule`` is the readable reason."""


def encode(data: dict[str, Any], ct: ContentType = "msgpack") -> bytes:
    """Encode a payload. JSON callers must pass blobs already as base64 text."""
    if ct == "msgpack":
        return msgpack.packb(data, use_bin_type=True)
    if ct == "json":
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    raise InvalidInputError("ct", "must be 'json' or 'msgpack'", ct)


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
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError) as e:
        raise DecodeError("data", f"not valid {ct}: {e}") from e
    if not isinstance(value, dict):
        raise DecodeError("data", f"must decode to a map, got {type(value).__name__}")
    return value
