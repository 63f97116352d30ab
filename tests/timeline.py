"""Stored events on a made-up timeline, for the TTL tests' convergence harness runs."""

from __future__ import annotations

from collections.abc import Callable

from memstream.producers.entry import StoredEvent
from memstream.producers.events import Event
from memstream.producers.events_messages import MessageAppended

At = Callable[..., StoredEvent]


def timeline(owner: str, start_ms: int, *, version: int | None = 1) -> At:
    """``at(dt_ms, event, session, version=...)``: ``event`` of ``owner`` stored with the
    log id ``start_ms + dt_ms``, as version ``version`` (None: the event's own VERSION)."""

    def at(
        dt_ms: int, event: Event, session: str | None, version: int | None = version
    ) -> StoredEvent:
        v = event.VERSION if version is None else version
        return StoredEvent(owner, f"{start_ms + dt_ms}-0", event.TYPE, v, event, session=session)

    return at


def user(text: str) -> MessageAppended:
    """A user message saying ``text``."""
    return MessageAppended(role="user", content=text)
