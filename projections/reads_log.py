"""Reads of the log itself, through the cold tier: ``log`` and history past the hot window.

Mixed into :class:`~memstream.projections.reader.AsyncReader` (AsyncLogReads) and the
blocking ``Reader`` (LogReads). Both read archived segments, then the hot log, as one
continuous log (:mod:`memstream.tiering.readthrough`): no gap, no duplicate.

History keeps the newest ``history_cap`` messages of a session in Redis. A page that
asks for more, or for messages before a cursor older than those, continues into the log
(hot, then archived), newest first, until it has ``last`` messages, reaches the
session's last ``history.cleared`` (older messages were cleared) or the history TTL.
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

from .base import Query, SyncRunner
from .codec import split_versioned
from .history import history_key, message_body, read_history
from .ops import id_tuple, sortable

LOG_LIMIT = 10_000
T = TypeVar("T")


class _LogRunner(Protocol):
    client: redis.asyncio.Redis
    settings: Settings

    async def run(self, query: Query[Any]) -> Any: ...

    async def _pk(self, owner: str) -> keys.Projection: ...


def _cold(r: _LogRunner) -> Any:
    """The reader's read-through log, made on first use (it imports zstandard)."""
    found = r.__dict__.get("_cold_log")
    if found is None:
        from memstream.tiering.archive import cached_archive
        from memstream.tiering.readthrough import AsyncColdLog

        found = r.__dict__["_cold_log"] = AsyncColdLog(r.client, cached_archive(r.settings))
    return found


def check_cursor(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    try:
        ms, seq = id_tuple(value)
    except (ValueError, AttributeError, TypeError) as e:
        raise InvalidInputError(field, "must be a log id like 1700000000000-0", value) from e
    return f"{ms}-{seq}"


def _entry(owner: str, log_id: str, fields: Any) -> dict[str, Any]:
    try:
        event = decode_entry(owner, log_id, fields)
    except DecodeError as e:
        return {"log_id": log_id, "error": str(e)}
    return {"log_id": log_id, "type": event.type, "v": event.version, "session": event.session,
            "eid": event.eid, "data": event.event.payload(json_safe=True)}  # fmt: skip


def _before_query(
    pk: keys.Projection, owner: str, session: str, last: int, before: str
) -> Query[tuple[int, list[dict[str, Any]]]]:
    """(messages kept hot, the last ``last`` hot messages older than ``before``)."""
    key = history_key(pk, owner, session)

    def parse(replies: list[Any]) -> tuple[int, list[dict[str, Any]]]:
        out = []
        for raw in reversed(replies[1]):
            log_id, body = split_versioned(raw)
            out.append({"log_id": log_id, **body})
        return int(replies[0]), out

    commands = [
        ("ZCARD", key),
        ("ZRANGE", key, f"({sortable(before)}", "-", "BYLEX", "REV", "LIMIT", 0, last),
    ]
    return Query(commands, parse)  # fmt: skip


class AsyncLogReads:
    async def log(
        self: _LogRunner, owner: str, since: str | None = None, until: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """The owner's log entries after ``since`` (a log id, exclusive; None: from the
        first) up to ``until`` (inclusive; None: the newest), oldest first, at most
        ``limit`` (1 to 10,000), archived and hot alike. Pass the last ``log_id`` back
        as ``since`` for the next page."""
        keys.check_id(owner)
        since = check_cursor(since, "since")
        until = check_cursor(until, "until")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= LOG_LIMIT:
            raise InvalidInputError("limit", f"must be an integer between 1 and {LOG_LIMIT}", limit)
        p = (await self._pk(owner)).p
        out: list[dict[str, Any]] = []
        async for log_id, fields in _cold(self).forward(p, owner, since, until or "+",
                                                       page=min(limit, 500)):  # fmt: skip
            out.append(_entry(owner, log_id, fields))
            if len(out) >= limit:
                break
        return out

    async def _history_page(
        self: _LogRunner, owner: str, session: str, last: int, before: str | None
    ) -> list[dict[str, Any]]:
        pk = await self._pk(owner)
        hot: list[dict[str, Any]]
        if before is None:
            hot = await self.run(read_history(pk, owner, session, last))
            kept = len(hot) if len(hot) < last else self.settings.history_cap
        else:
            kept, hot = await self.run(_before_query(pk, owner, session, last, before))
        if len(hot) >= last or kept < self.settings.history_cap:
            return list(hot)  # the hot set holds every message not cleared
        start = hot[0]["log_id"] if hot else before
        older = await _walk(self, pk.p, owner, session, want=last - len(hot), before=start)
        return [*older, *hot]


async def _walk(
    r: _LogRunner, p: int, owner: str, session: str, *, want: int, before: str | None
) -> list[dict[str, Any]]:
    """Up to ``want`` messages of ``session`` older than ``before``, oldest first."""
    ttl = r.settings.history_ttl_s
    oldest_live = int(time.time() * 1000) - ttl * 1000 if ttl is not None else None
    found: list[dict[str, Any]] = []
    async for log_id, fields in _cold(r).backward(p, owner, before):
        if fields.get(b"session") != session.encode():
            continue
        if oldest_live is not None and id_tuple(log_id)[0] <= oldest_live:
            break  # older messages have expired
        try:
            event = decode_entry(owner, log_id, fields)
        except DecodeError:
            continue
        if isinstance(event.event, HistoryCleared):
            break
        if isinstance(event.event, MessageAppended):
            found.append({"log_id": log_id, **message_body(event.event, event.ts_ms)})
            if len(found) >= want:
                break
    found.reverse()
    return found


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


def _sync(name: str) -> Any:
    def method(self: SyncRunner, *args: Any, **kwargs: Any) -> Any:
        return self._call(getattr(self._async, name)(*args, **kwargs))

    method.__name__ = name
    method.__doc__ = getattr(AsyncLogReads, name).__doc__
    return method


class LogReads:
    """Blocking twins of :class:`AsyncLogReads`."""

    log = _sync("log")
