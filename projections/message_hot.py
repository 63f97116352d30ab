"""Every session's hot window in a few round trips: what keyword message search scores.

A keyword ``search_messages`` over every session reads each session's newest
``history_cap`` messages, exactly what ``history(owner, session, last=history_cap)``
returns. Read one session at a time that is one round trip per session (758 ms over
1,000 sessions on the shared machine, most of it waiting); here the owner's sessions and
their windows are one plan: the session list, then the windows' reads pipelined
:data:`CHUNK` sessions per round trip, each parsed by the history read's own parse
(:func:`.history.read_history`), so a window reads back as it does there (as dicts:
``history()`` wraps them in :class:`~.results.Message`, which search does for its hits
alone).

All the keys are the owner's, so in one partition and one Cluster slot: one pipeline
reaches one node. A chunk's keys are cacheable together (one owner), so the reader's
cache serves a repeated search in one hit per chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from memstream.producers import keys

from .base import Continue, Query
from .history import read_history
from .sessions import read_sessions

CHUNK = 1000
"""Sessions per round trip: a reply of 1,000 windows of 100 messages is a few MB, and a
bound keeps one search from holding the connection for an unbounded reply."""

Windows = dict[str, list[dict[str, Any]]]


def hot_windows(
    pk: keys.Projection, owner: str, sessions: Sequence[str], cap: int
) -> Query[Windows]:
    """session -> its newest ``cap`` messages, oldest first, for each of ``sessions`` (an
    empty list for a session with none), in ``len(sessions) / CHUNK`` round trips."""
    names = list(dict.fromkeys(sessions))  # a session named twice is read once
    if not names:
        return Query([], lambda _: {})
    return _chunk(pk, owner, names, cap, 0, found={})


def owner_windows(pk: keys.Projection, owner: str, cap: int) -> Query[Windows]:
    """:func:`hot_windows` of every session of ``owner`` (its sessions read first, in the
    same plan), most recently active first."""
    sessions = read_sessions(pk, owner)

    def parse(replies: list[Any]) -> Windows | Query[Windows]:
        rows = sessions.parse(replies)
        assert isinstance(rows, list)  # the session list is one stage
        names = [row["session"] for row in rows]
        return _chunk(pk, owner, names, cap, 0, found={}) if names else {}

    return Query(sessions.commands, parse, sessions.cacheable_keys)


def _chunk(
    pk: keys.Projection, owner: str, names: list[str], cap: int, start: int, *, found: Windows
) -> Query[Windows]:
    reads = [read_history(pk, owner, name, cap) for name in names[start : start + CHUNK]]
    commands = [command for read in reads for command in read.commands]
    cacheable = tuple(key for read in reads for key in read.cacheable_keys)

    def parse(replies: list[Any]) -> Windows | Query[Windows] | Continue[Windows]:
        at = 0
        for name, read in zip(names[start:], reads, strict=False):
            step = read.parse(replies[at : at + len(read.commands)])
            assert isinstance(step, list)  # a history window is one stage
            found[name] = step
            at += len(read.commands)
        if start + CHUNK >= len(names):
            return found
        return _chunk(pk, owner, names, cap, start + CHUNK, found=found)

    return Query(commands, parse, cacheable)
