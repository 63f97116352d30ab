"""Which of a session's messages belong to its current life (docs/ttl.md, "A session's
lives").

A session id can be used again after its history expired: the new message creates the
history key again, but the earlier life's messages are still in the log (a replay folds
them all), and its message vectors may still be stored. The history's ``SESSEXP`` op
(``workers/lua/apply.lua``) therefore keeps a **life boundary** per session: the version
of the first message after the newest gap between two messages longer than the TTL in
effect during it (no earlier than the ``ttl.extended`` floor then): the messages and
every choice and extension (the session's TTL events, ``tl:<session>`` in the choice
hash) are replayed in log order. It is computed from merged state only (the capped set
of messages, the set of TTL events, the default, the cap), so every delivery order,
a live run and a replay end with the same boundary; nothing is pruned on its strength,
since a late message can still bridge a gap. Every read of a session's messages hides
those older than it: the hot window, paging into the log, keyword and semantic search.

The record is the key ``life:<owner>:<session>``, expiring with the history key:
``<boundary>|<newest>|...`` (the rest is the walk's state, ``workers/lua/apply.lua``).
The boundary is empty when the current life reaches past the capped window (every older
message not cleared counts); the rest lets the next call walk only what it added.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

from memstream.producers import keys

from .base import Query
from .ops import VERSION_LEN, sortable


def life_key(pk: keys.Projection, owner: str, session: str) -> str:
    """``session``'s life record: its own key, written by ``SESSEXP`` with the history key's
    expiry (the record is read only while the history exists: without it a session has
    no messages to hide, and a new life's first walk needs no record)."""
    return pk.key("life", owner, session)


def ttl_events_field(session: str) -> str:
    """The choice hash's field of ``session``'s TTL events: every choice and extension,
    which the boundary's walk replays with the messages (not only the LWW winner)."""
    return f"tl:{session}"


def ttl_event(log_id: str, kind: str, ms: int) -> str:
    """One TTL event as ``TLADD`` keeps it: the event's sortable version, ``kind``
    (``c`` a chosen TTL of ``ms``, ``d`` back to the default, ``e`` a floor at ``ms``)
    and ``ms`` in 13 digits (fixed width, so the entries of a field sort as text)."""
    return f"{sortable(log_id)}{kind}{ms:013d}"


def boundary_of(record: bytes | None) -> bytes:
    """The boundary version in a life ``record`` (b"" when none: every message counts)."""
    return record.partition(b"|")[0] if record else b""


def current(members: list[bytes], boundary: bytes) -> list[bytes]:
    """``members`` (history members, in log order) of the current life: those whose
    version is at or after ``boundary``. A member starts with its version, so it sorts
    at or after the boundary exactly when its version does."""
    if not boundary or not members or members[0][:VERSION_LEN] >= boundary:
        return members
    return members[bisect_left(members, boundary) :]


def is_current(log_id: str, boundary: bytes) -> bool:
    """Whether the message ``log_id`` is of the life that starts at ``boundary``."""
    return not boundary or sortable(log_id).encode() >= boundary


def read_boundaries(
    pk: keys.Projection, owner: str, sessions: Sequence[str]
) -> Query[dict[str, bytes]]:
    """session -> its life boundary (b"" when none), for each of ``sessions``."""
    names = sorted(set(sessions))
    if not names:
        return Query([], lambda _: {})

    def parse(replies: list[Any]) -> dict[str, bytes]:
        return {name: boundary_of(rec) for name, rec in zip(names, replies[0], strict=True)}

    return Query([("MGET", *(life_key(pk, owner, name) for name in names))], parse)
