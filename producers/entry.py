"""Decoding log entries, whoever wrote them: our producer, ``redis-cli`` or another language.

Every failure becomes a :class:`DecodeError` whose message is the reason a worker writes
to the DLQ, so an operator can read what was wrong with the entry.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from .codec import DecodeError, decode
from .events import Event, GenericEvent, build
from .keys import check_id

Fields = Mapping[bytes, bytes]


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One decoded log entry; ``log_id`` orders an owner's events and versions LWW fields."""

    owner: str
    log_id: str
    type: str
    version: int
    event: Event
    session: str | None = None
    eid: str | None = None
    ct: str = "msgpack"

    @property
    def ts_ms(self) -> int:
        return int(self.log_id.split("-", 1)[0])

    @property
    def known(self) -> bool:
        return not isinstance(self.event, GenericEvent)


def _text(fields: Fields, name: bytes, *, required: bool = True) -> str | None:
    raw = fields.get(name)
    if raw is None:
        if required:
            raise DecodeError(name.decode(), "is missing from the log entry")
        return None
    try:
        return raw.decode()
    except UnicodeDecodeError as e:
        raise DecodeError(name.decode(), "is not UTF-8 text") from e


@functools.lru_cache(maxsize=4096)
def _session(text: str) -> str:
    # Cached: a worker meets the same few sessions over and over; a bad one raises, and
    # raised calls are not cached.
    try:
        return check_id(text, "session")
    except ValueError as e:
        raise DecodeError("session", str(e)) from e


def decode_entry(owner: str, log_id: str, fields: Fields) -> StoredEvent:
    """Decode and validate one entry; raise :class:`DecodeError` with a readable reason."""
    event_type = _text(fields, b"type")
    assert event_type is not None
    raw = fields.get(b"data")
    if raw is None:
        raise DecodeError("data", "is missing from the log entry")
    ct = _text(fields, b"ct", required=False) or "msgpack"
    version_text = _text(fields, b"v", required=False) or "1"
    if not version_text.isdigit() or int(version_text) < 1:
        raise DecodeError("v", "must be a positive integer", version_text)
    version = int(version_text)
    session = _text(fields, b"session", required=False)
    if session is not None:
        _session(session)
    data = decode(raw, ct)
    try:
        event = build(event_type, version, data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "data"
        raise DecodeError(
            f"data.{where}", f"{first['msg']} for {event_type} v{version_text}"
        ) from e
    except ValueError as e:
        raise DecodeError("data", f"{e} for {event_type} v{version_text}") from e
    if event.SESSION == "required" and session is None:
        raise DecodeError("session", f"is required for {event_type}")
    return StoredEvent(
        owner=owner,
        log_id=log_id,
        type=event_type,
        version=version,
        event=event,
        session=session,
        eid=_text(fields, b"eid", required=False),
        ct=ct,
    )
