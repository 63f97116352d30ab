"""Decoding log entries, whoever wrote them: our producer, ``redis-cli`` or another language.

Every failure becomes a :class:`DecodeError` whose message is the reason a worker writes
to the DLQ, so an operator can read what was wrong with the entry.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack
from pydantic import ValidationError

from .codec import MAX_DEPTH, NOT_OPENERS, DecodeError, decode
from .events import Event, GenericEvent, build
from .keys import check_id

Fields = Mapping[bytes, bytes]


@dataclass(slots=True)
class StoredEvent:
    """One decoded log entry; ``log_id`` orders an owner's events and versions LWW fields.

    Treat it as read-only (projections share it). It is not ``frozen`` because a frozen
    dataclass's ``__init__`` costs twice as much, and a worker builds one per event.
    """

    owner: str
    log_id: str
    type: str
    version: int
    event: Event
    session: str | None = None
    eid: str | None = None
    ct: str = "msgpack"
    ts_ms: int = field(init=False, repr=False, compare=False)
    """The event's time (the log id's milliseconds); projections ask for it several
    times per event, so it is parsed once."""

    def __post_init__(self) -> None:
        self.ts_ms = int(self.log_id.split("-", 1)[0])

    @property
    def known(self) -> bool:
        return not isinstance(self.event, GenericEvent)


def _text(fields: Fields, name: bytes, *, required: bool = True) -> str | None:
    raw = fields.get(name)
    if raw is None:
        if required:
            raise DecodeError(name.decode(), "is missing from the log entry")
        return None
    return _utf8(raw, name)


def _utf8(raw: bytes, name: bytes) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError as e:
        raise DecodeError(name.decode(), "is not UTF-8 text") from e


@functools.lru_cache(maxsize=1024)
def _header(raw_type: bytes, raw_ct: bytes | None, raw_v: bytes | None) -> tuple[str, str, int]:
    # Cached: an entry's type, content type and version come from a handful of values,
    # and checking them was a fifth of decoding. Raised calls are not cached.
    event_type = _utf8(raw_type, b"type")
    ct = (_utf8(raw_ct, b"ct") if raw_ct is not None else "") or "msgpack"
    version_text = (_utf8(raw_v, b"v") if raw_v is not None else "") or "1"
    if not version_text.isdigit() or int(version_text) < 1:
        raise DecodeError("v", "must be a positive integer", version_text)
    return event_type, ct, int(version_text)


@functools.lru_cache(maxsize=4096)
def _session(raw: bytes) -> str:
    # Cached: a worker meets the same few sessions over and over; a bad one raises, and
    # raised calls are not cached.
    text = _utf8(raw, b"session")
    try:
        return check_id(text, "session")
    except ValueError as e:
        raise DecodeError("session", str(e)) from e


def _payload(raw: bytes, ct: str) -> dict[str, Any]:
    """``decode(raw, ct)``, with a shortcut for the usual msgpack payload.

    Each level of nesting needs its own container header byte, so a payload with at most
    MAX_DEPTH bytes that could start one cannot nest deeper: its nesting walk (a fifth of
    decoding an entry) is skipped. Anything else, and any failure, goes through
    :func:`~memstream.producers.codec.decode`, which names the reason."""
    if ct == "msgpack" and len(raw.translate(None, NOT_OPENERS)) <= MAX_DEPTH:
        try:
            value = msgpack.unpackb(raw, raw=False, strict_map_key=True)
        except Exception:
            value = None
        if type(value) is dict:
            return value
    return decode(raw, ct)


def decode_entry(owner: str, log_id: str, fields: Fields) -> StoredEvent:
    """Decode and validate one entry; raise :class:`DecodeError` with a readable reason."""
    get = fields.get
    raw_type = get(b"type")
    if raw_type is None:
        raise DecodeError("type", "is missing from the log entry")
    raw = get(b"data")
    if raw is None:
        raise DecodeError("data", "is missing from the log entry")
    event_type, ct, version = _header(raw_type, get(b"ct"), get(b"v"))
    raw_session = get(b"session")
    session = None if raw_session is None else _session(raw_session)
    data = _payload(raw, ct)
    try:
        event = build(event_type, version, data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "data"
        raise DecodeError(f"data.{where}", f"{first['msg']} for {event_type} v{version}") from e
    except ValueError as e:
        raise DecodeError("data", f"{e} for {event_type} v{version}") from e
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
