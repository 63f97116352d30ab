"""The walk behind ``search_messages(..., cold=True)`` decides per entry as history
paging does: only the walked sessions' messages older than their hot windows, a
session's walk ends at its last clear, every walk at the history TTL and at the cap."""

from __future__ import annotations

import time
from typing import Any

import pytest

from memstream.producers.codec import encode
from memstream.producers.events import Event
from memstream.producers.events_messages import HistoryCleared, MessageAppended
from memstream.producers.settings import Settings
from memstream.projections.message_walk import MessageWalk, windows

OWNER = "agent.walk"


def _entry(now: int, ago_s: float, session: str, event: Event) -> tuple[str, dict[bytes, Any]]:
    fields = {b"type": event.TYPE.encode(), b"data": encode(event.payload()),
              b"ct": b"msgpack", b"v": str(event.VERSION).encode(),
              b"session": session.encode()}  # fmt: skip
    return f"{now - int(ago_s * 1000)}-0", fields


def _msg(text: str) -> MessageAppended:
    return MessageAppended(role="user", content=text)


def _walk(walk: MessageWalk, entries: list[tuple[str, dict[bytes, Any]]]) -> int:
    """Entries taken until the walk said it was done."""
    for n, (log_id, fields) in enumerate(entries, 1):
        if walk.take(OWNER, log_id, fields):
            return n
    return len(entries)


def test_windows_are_the_full_ones() -> None:
    pages = {"full": [{"log_id": "5-0"}, {"log_id": "6-0"}], "room": [{"log_id": "7-0"}]}
    assert windows(pages, 2) == {"full": "5-0"}


@pytest.mark.parametrize("ttl", [None, 60])
def test_the_walk_keeps_older_messages_of_walked_sessions_until_a_clear(
    ttl: int | None,
) -> None:
    now = int(time.time() * 1000)  # entry times are relative to the test's start
    hot_s1, hot_s2 = f"{now - 1_000}-0", f"{now - 3_000}-0"
    walk = MessageWalk(Settings(history_ttl_s=ttl), {"s1": hot_s1, "s2": hot_s2}, 100)
    assert walk.start() == hot_s1  # the newest of the windows' starts
    entries = [
        _entry(now, 2, "s1", _msg("one")),
        _entry(now, 2.5, "s2", _msg("still in s2's window")),
        _entry(now, 3, "s3", _msg("not walked")),
        _entry(now, 4, "s2", _msg("two")),
        _entry(now, 5, "s2", HistoryCleared()),
        _entry(now, 6, "s2", _msg("cleared")),
        _entry(now, 7, "s1", _msg("three")),
        _entry(now, 8, "s1", HistoryCleared()),
        _entry(now, 9, "s1", _msg("never reached")),
    ]
    assert _walk(walk, entries) == 8, "done once every session reached its clear"
    assert [(s, m["content"]) for s, m in walk.found] == [
        ("s1", "one"), ("s2", "two"), ("s1", "three")
    ]  # fmt: skip
    assert walk.found[0][1]["log_id"] == entries[0][0]


def test_the_walk_stops_at_the_history_ttl_and_at_the_cap() -> None:
    now = int(time.time() * 1000)
    entries = [
        _entry(now, ago, "s1", _msg(text))
        for ago, text in ((10, "recent"), (50, "nearly old"), (61, "expired"), (62, "older"))
    ]
    walk = MessageWalk(Settings(history_ttl_s=60), {"s1": f"{now}-0"}, 100)
    assert _walk(walk, entries) == 3
    assert [m["content"] for _, m in walk.found] == ["recent", "nearly old"]
    capped = MessageWalk(Settings(), {"s1": f"{now}-0"}, 2)
    assert _walk(capped, entries) == 2
    assert [m["content"] for _, m in capped.found] == ["recent", "nearly old"]
    assert MessageWalk(Settings(), {}, 10).start() is None
