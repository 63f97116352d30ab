"""Reads of the log itself, through the cold tier: ``log`` and history past the hot window.

Mixed into :class:`~memstream.projections.reader.AsyncReader` (AsyncLogReads) and the
blocking ``Reader`` (LogReads). Both read archived segments, then the hot log, as one
continuous log (:mod:`memstream.tiering.readthrough`: ``AsyncColdLog`` and the blocking
``ColdLog``): no gap, no duplicate. The decisions (which entry to keep, when to stop) are
written once and shared by the two walks.

History keeps the newest ``history_cap`` messages of a session in Redis. A page that
asks for more, or for messages before a cursor older than those, continues into the log
(hot, then archived), newest first, until it has ``last`` messages, reaches the
session's last ``history.cleared`` (older messages were cleared), the start of the
session's current life (:mod:`.session_life`: one more round trip, on this path only) or
the history TTL.
"""

from __future__ import annotations

import time
from typing import Any, Protocol, TypeVar

import redis.asyncio

from memstream.producers import keys
from memstream.producers.codec import DecodeError
from memstream.producers.entry import decode_entry
from memstream.producers.errors import InvalidInputError
from memstream.producers.events_messages import HistoryCleared, MessageAppended
from memstream.producers.settings import Settings

from .base import Query, doc_from
from .codec import split_versioned
from .history import history_key, message_body, read_history
from .ops import id_tuple, sortable
from .results import LogEntry, Message
from .session_life import boundary_of, current, is_current, life_key

LOG_LIMIT = 10_000
T = TypeVar("T")


class _LogRunner(Protocol):
    client: redis.asyncio.Redis
    settings: Settings

    async def run(self, query: Query[Any]) -> Any: ...

    async def _pk(self, owner: str) -> keys.Projection: ...


class _SyncLogRunner(Protocol):
    settings: Settings

    @property
    def client(self) -> redis.Redis: ...

    def run(self, query: Query[Any]) -> Any: ...

    def _pk(self, owner: str) -> keys.Projection: ...


def _cold(r: _LogRunner) -> Any:
    """The reader's read-through log, made on first use (it imports zstandard)."""
    found = r.__dict__.get("_cold_log")
    if found is None:
        from memstream.tiering.archive import cached_archive
        from memstream.tiering.readthrough import AsyncColdLog

        found = r.__dict__["_cold_log"] = AsyncColdLog(r.client, cached_archive(r.settings))
    return found


def _cold_sync(r: _SyncLogRunner) -> Any:
    """The blocking reader's read-through log, made on first use."""
    found = r.__dict__.get("_cold_log")
    if found is None:
        from memstream.tiering.archive import cached_archive
        from memstream.tiering.readthrough import ColdLog

        found = r.__dict__["_cold_log"] = ColdLog(r.client, cached_archive(r.settings))
    return found


def _check_log(owner: str, since: str | None, until: str | None, limit: int) -> tuple[
    str | None, str]:  # fmt: skip
    keys.check_id(owner)
    since = check_cursor(since, "since")
    until = check_cursor(until, "until")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= LOG_LIMIT:
        raise InvalidInputError("limit", f"must be an integer between 1 and {LOG_LIMIT}", limit)
    return since, until or "+"


def check_cursor(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    try:
        ms, seq = id_tuple(value)
    except (ValueError, AttributeError, TypeError) as e:
        raise InvalidInputError(field, "must be a log id like 1700000000000-0", value) from e
    return f"{ms}-{seq}"


def _entry(owner: str, log_id: str, fields: Any) -> LogEntry:
    try:
        event = decode_entry(owner, log_id, fields)
    except DecodeError as e:
        return LogEntry(log_id, error=str(e))
    return LogEntry(log_id, event.type, event.version, event.session, event.eid,
                    event.event.payload(json_safe=True))  # fmt: skip


HotPage = tuple[int, list[dict[str, Any]], bytes]
"""(messages kept hot, the page's hot messages, the session's life boundary)."""


def _hot_page(
    pk: keys.Projection, owner: str, session: str, last: int, before: str | None, *, cap: int
) -> Query[HotPage]:
    """A history page's first round trip: its hot messages (the last ``last``, or the
    last ``last`` older than ``before``) with the life boundary they were filtered by,
    which a walk into the log then honours without reading it again."""
    if before is not None:
        return _before_query(pk, owner, session, last, before)
    window = read_history(pk, owner, session, last)

    def parse(replies: list[Any]) -> HotPage:
        hot = window.parse(replies)
        assert isinstance(hot, list)  # one stage
        return (len(hot) if len(hot) < last else cap), hot, boundary_of(replies[1])

    return Query(window.commands, parse)


def _before_query(
    pk: keys.Projection, owner: str, session: str, last: int, before: str
) -> Query[HotPage]:
    """:data:`HotPage` of the last ``last`` hot messages older than ``before`` of the
    session's current life."""
    key = history_key(pk, owner, session)

    def parse(replies: list[Any]) -> HotPage:
        out = []
        bound = boundary_of(replies[2])
        for raw in current(replies[1][::-1], bound):
            log_id, body = split_versioned(raw)
            out.append({"log_id": log_id, **body})
        return int(replies[0]), out, bound

    commands = [
        ("ZCARD", key),
        ("ZRANGE", key, f"({sortable(before)}", "-", "BYLEX", "REV", "LIMIT", 0, last),
        ("GET", life_key(pk, owner, session)),
    ]
    return Query(commands, parse)  # fmt: skip


class AsyncLogReads:
    async def log(
        self: _LogRunner, owner: str, since: str | None = None, until: str | None = None,
        limit: int = 100,
    ) -> list[LogEntry]:  # fmt: skip
        """``owner``'s log entries after ``since`` (a log id, exclusive; None: from the
        first) up to ``until`` (inclusive; None: the newest), oldest first, at most
        ``limit`` (1 to 10,000), archived and hot alike. Pass the last ``log_id`` back
        as ``since`` for the next page."""
        since, end = _check_log(owner, since, until, limit)
        p = (await self._pk(owner)).p
        out: list[LogEntry] = []
        async for log_id, fields in _cold(self).forward(p, owner, since, end,
                                                       page=min(limit, 500)):  # fmt: skip
            out.append(_entry(owner, log_id, fields))
            if len(out) >= limit:
                break
        return out

    async def _history_page(
        self: _LogRunner, owner: str, session: str, last: int, before: str | None
    ) -> list[Message]:
        pk = await self._pk(owner)
        page = _hot_page(pk, owner, session, last, before, cap=self.settings.history_cap)
        kept, hot, boundary = await self.run(page)
        if _complete(self.settings, hot, kept, last):
            return Message.many(hot)
        walk = _Walk(self.settings, session, last - len(hot), boundary)
        async for log_id, fields in _cold(self).backward(pk.p, owner, _start(hot, before)):
            if walk.stop(owner, log_id, fields):
                break
        return Message.many([*walk.found(), *hot])


def _complete(settings: Settings, hot: list[dict[str, Any]], kept: int, last: int) -> bool:
    """Whether the hot page is the whole answer: it has ``last`` messages, or the hot set
    (``kept`` messages) holds every message not cleared."""
    return len(hot) >= last or kept < settings.history_cap


def _start(hot: list[dict[str, Any]], before: str | None) -> str | None:
    """Where the walk into the log starts: before the oldest hot message (None: the
    newest entry)."""
    return str(hot[0]["log_id"]) if hot else before


class _Walk:
    """The messages of ``session`` a backward walk of the log keeps, oldest first at the
    end: it stops at ``want`` messages, the session's last clear, the start of its
    current life (``boundary``, :mod:`.session_life`), or the history TTL."""

    def __init__(self, settings: Settings, session: str, want: int, boundary: bytes) -> None:
        ttl = settings.history_ttl_s
        self.oldest_live = int(time.time() * 1000) - ttl * 1000 if ttl is not None else None
        self.session, self.want, self.boundary = session.encode(), want, boundary
        self._found: list[dict[str, Any]] = []

    def stop(self, owner: str, log_id: str, fields: Any) -> bool:
        """Take one entry (newest first); True when the walk is done."""
        if fields.get(b"session") != self.session:
            return False
        if self.oldest_live is not None and id_tuple(log_id)[0] <= self.oldest_live:
            return True  # older messages have expired
        if not is_current(log_id, self.boundary):
            return True  # older messages are of the session's earlier lives
        try:
            event = decode_entry(owner, log_id, fields)
        except DecodeError:
            return False
        if isinstance(event.event, HistoryCleared):
            return True
        if isinstance(event.event, MessageAppended):
            self._found.append({"log_id": log_id, **message_body(event.event, event.ts_ms)})
        return len(self._found) >= self.want

    def found(self) -> list[dict[str, Any]]:
        return self._found[::-1]


COLD = "$cold"
"""Marks a projection value kept in the archive (see ``memstream.tiering.cold``)."""


_CONTAINERS = (dict, list)


def _has_cold(value: Any, depth: int = 0) -> bool:
    # Every read pays this walk: a plain loop that stops at the first pointer, not
    # nested generators (a third of a history(last=20) read's client time otherwise).
    if isinstance(value, dict):
        if COLD in value:
            return True
        if depth >= 4:
            return False
        children: Any = value.values()
    elif isinstance(value, list):
        if depth >= 4:
            return False
        children = value
    else:
        return False
    below = depth + 1
    for v in children:  # noqa: SIM110 (a generator costs a frame per item here)
        if isinstance(v, _CONTAINERS) and _has_cold(v, below):
            return True
    return False


async def resolve_cold(settings: Settings, result: T) -> T:
    """``result`` with every archived value put back in place of its pointer: readers
    never see a pointer. The walk is all a read pays when nothing is archived."""
    if not _has_cold(result):
        return result
    from memstream.tiering.archive import cached_archive
    from memstream.tiering.cold import resolve

    resolved: T = await resolve(result, cached_archive(settings))
    return resolved


def resolve_cold_blocking(settings: Settings, result: T) -> T:
    """:func:`resolve_cold` for the blocking reader, in the caller's thread."""
    if not _has_cold(result):
        return result
    from memstream.tiering.archive import cached_archive
    from memstream.tiering.cold import resolve_blocking

    resolved: T = resolve_blocking(result, cached_archive(settings))
    return resolved


class LogReads:
    """Blocking twins of :class:`AsyncLogReads`, walking the blocking ``ColdLog``."""

    @doc_from(AsyncLogReads.log)
    def log(
        self: _SyncLogRunner, owner: str, since: str | None = None, until: str | None = None,
        limit: int = 100,
    ) -> list[LogEntry]:  # fmt: skip
        since, end = _check_log(owner, since, until, limit)
        p = self._pk(owner).p
        out: list[LogEntry] = []
        for log_id, fields in _cold_sync(self).forward(p, owner, since, end, page=min(limit, 500)):
            out.append(_entry(owner, log_id, fields))
            if len(out) >= limit:
                break
        return out

    def _history_page(
        self: _SyncLogRunner, owner: str, session: str, last: int, before: str | None
    ) -> list[Message]:
        pk = self._pk(owner)
        page = _hot_page(pk, owner, session, last, before, cap=self.settings.history_cap)
        kept, hot, boundary = self.run(page)
        if _complete(self.settings, hot, kept, last):
            return Message.many(hot)
        walk = _Walk(self.settings, session, last - len(hot), boundary)
        for log_id, fields in _cold_sync(self).backward(pk.p, owner, _start(hot, before)):
            if walk.stop(owner, log_id, fields):
                break
        return Message.many([*walk.found(), *hot])
