"""The older messages a keyword message search reads with ``cold=True``.

History keeps the newest ``history_cap`` messages of each session in Redis; keyword
search scores those. ``search_messages(..., cold=True)`` also reads the messages older
than each session's hot window from the log, hot then archived (one backward walk of the
owner's log through :class:`memstream.tiering.readthrough.AsyncColdLog`), so BM25 ranks
the whole history with one set of statistics.

Which older messages count is what ``history()`` paging would return, decided the same
way (:mod:`.reads_log`): only sessions whose hot window is full have older messages (a
window with room holds every message not cleared, and an expired session has none); a
session's walk ends at its last ``history.cleared`` or at the start of its current life
(:mod:`.session_life`, read in one round trip for the walked sessions), and every walk at
the history TTL.
A forgotten owner has no log and no manifest, so the walk finds nothing of it.

The walk reads at most ``cold_limit`` log entries (of any session or type), starting
just before the newest of the sessions' oldest hot messages: the work is bounded by the
caller, never by the owner's history.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from memstream.producers.codec import DecodeError
from memstream.producers.entry import decode_entry
from memstream.producers.errors import InvalidInputError
from memstream.producers.events_messages import HistoryCleared, MessageAppended
from memstream.producers.settings import Settings

from .history import message_body
from .ops import id_tuple
from .session_life import is_current, read_boundaries

COLD_LIMIT = 10_000
"""Log entries a cold keyword search reads by default: a few archived segments, tens of
milliseconds of tokenizing (docs/search.md)."""
MAX_COLD_LIMIT = 1_000_000


def check_cold(cold: Any, cold_limit: Any) -> None:
    """Refuse a ``cold`` that is not a bool or a ``cold_limit`` out of range."""
    if not isinstance(cold, bool):
        raise InvalidInputError("cold", "must be True or False", cold)
    if (
        isinstance(cold_limit, bool)
        or not isinstance(cold_limit, int)
        or not 1 <= cold_limit <= MAX_COLD_LIMIT
    ):
        raise InvalidInputError("cold_limit", f"must be an integer 1..{MAX_COLD_LIMIT}",
                                cold_limit)  # fmt: skip


def windows(pages: Mapping[str, Sequence[Mapping[str, Any]]], cap: int) -> dict[str, str]:
    """session -> its oldest hot message's log id, for the sessions whose hot window is
    full (``cap`` messages): only those can have older messages that are not cleared."""
    return {name: str(page[0]["log_id"]) for name, page in pages.items() if len(page) >= cap}


class MessageWalk:
    """Takes log entries newest first and keeps the messages of the walked sessions older
    than their hot windows; done at ``limit`` entries, when every session reached its last
    clear, or at the history TTL."""

    def __init__(
        self, settings: Settings, hot_from: Mapping[str, str], limit: int,
        boundaries: Mapping[str, bytes] | None = None,
    ) -> None:  # fmt: skip
        """``hot_from``: session -> its oldest hot message's log id; ``boundaries``:
        session -> the start of its current life (:mod:`.session_life`; none: all)."""
        ttl = settings.history_ttl_s
        self.oldest_live = int(time.time() * 1000) - ttl * 1000 if ttl is not None else None
        self._before = {name.encode(): id_tuple(log_id) for name, log_id in hot_from.items()}
        self._bounds = {name.encode(): b for name, b in (boundaries or {}).items() if b}
        self.left = limit
        self.found: list[tuple[str, dict[str, Any]]] = []

    def start(self) -> str | None:
        """Where the walk starts (exclusive): no older message of any session is newer."""
        if not self._before:
            return None
        ms, seq = max(self._before.values())
        return f"{ms}-{seq}"

    def take(self, owner: str, log_id: str, fields: Any) -> bool:
        """Take one entry; True when the walk is done."""
        self.left -= 1
        at = id_tuple(log_id)
        if self.oldest_live is not None and at[0] <= self.oldest_live:
            return True  # every older entry is past the history TTL
        session = fields.get(b"session")
        before = self._before.get(session)
        if before is not None and at < before:
            bound = self._bounds.get(session)
            if bound is not None and not is_current(log_id, bound):
                del self._before[session]  # older messages are of the session's earlier lives
            else:
                self._keep(owner, log_id, fields, session)
        return self.left <= 0 or not self._before

    def _keep(self, owner: str, log_id: str, fields: Any, session: bytes) -> None:
        try:
            event = decode_entry(owner, log_id, fields)
        except DecodeError:
            return  # history skipped it too (the worker dead-lettered it)
        if isinstance(event.event, HistoryCleared):
            del self._before[session]  # older messages of this session were cleared
        elif isinstance(event.event, MessageAppended):
            body = {"log_id": log_id, **message_body(event.event, event.ts_ms)}
            self.found.append((session.decode(), body))


async def older_messages(
    r: Any, owner: str, hot_from: Mapping[str, str], limit: int
) -> list[tuple[str, dict[str, Any]]]:
    """(session, message) of every message older than its session's hot window that
    ``history()`` paging would return, newest first, reading at most ``limit`` entries."""
    from .reads_log import _cold

    if not hot_from:
        return []
    pk = await r._pk(owner)
    walk = MessageWalk(r.settings, hot_from, limit,
                       await r.run(read_boundaries(pk, owner, list(hot_from))))  # fmt: skip
    page = min(limit, 500)  # a small limit need not fetch a full hot page
    async for log_id, fields in _cold(r).backward(pk.p, owner, walk.start(), page=page):
        if walk.take(owner, log_id, fields):
            break
    return walk.found
