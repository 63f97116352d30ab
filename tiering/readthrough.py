"""One continuous log per owner: archived segments, then the hot log, in id order.

Each step reads the hot page and the manifest in one MULTI (both live in the owner's
slot), so it sees a single moment: at that moment the cold segments hold exactly the
entries older than the oldest hot one, because ``ms_tier_commit`` records a segment and
trims its entries in one call. A step that finds a segment after the cursor reads it
first; otherwise the hot page is next. Entries the tier moved between two steps are
found in the segment the next step sees, and a filter on the cursor drops the ones
already returned, so there is no gap and no duplicate at the boundary.

:class:`ColdLog` is the blocking reader (tail, replay); :class:`AsyncColdLog` the
asyncio one (``Reader.log``, history paging), running archive reads in a thread.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio

from memstream.producers import keys
from memstream.projections.ops import id_tuple

from . import manifest as mf
from .archive import Archive
from .cache import SHARED, SegmentCache
from .errors import ArchiveConfigError
from .manifest import Segment
from .segment import Entry, Row, as_entry, decode

PAGE = 500


def _ids(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _rows(page: Any) -> list[Entry]:
    # A Cluster's MULTI leaves raw XRANGE replies unparsed: fields as a flat list.
    return [(_ids(i), dict(zip(f[::2], f[1::2], strict=True)) if isinstance(f, list) else dict(f))
            for i, f in page]  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Forward:
    """What one forward step decided: a segment to read, or a hot page."""

    seg: Segment | None
    rows: list[Entry]


def _forward_commands(p: int, owner: str, cursor: str | None, end: str, n: int) -> list[Any]:
    low = "-" if cursor is None else f"({cursor}"
    return [("XRANGE", keys.log(p, owner), low, end, "COUNT", n),
            ("ZRANGE", keys.manifest(p, owner), *mf.after(cursor))]  # fmt: skip


def _decide_forward(replies: list[Any], end: str) -> _Forward:
    rows, found = _rows(replies[0]), replies[1]
    seg = Segment.parse(found[0]) if found else None
    if seg is not None and (end == "+" or id_tuple(seg.first) <= id_tuple(end.lstrip("("))):
        return _Forward(seg, [])
    return _Forward(None, rows)


def _position(rows: list[Row], log_id: str) -> int:
    """Index of the first row whose id is after ``log_id`` (rows are in id order)."""
    return bisect.bisect_right(rows, id_tuple(log_id), key=lambda row: id_tuple(row[0]))


def _in_range(rows: list[Row], cursor: str | None, end: str) -> list[Entry]:
    low = 0 if cursor is None else _position(rows, cursor)
    if end == "+":
        high = len(rows)
    elif end.startswith("("):
        bound = id_tuple(end[1:])
        high = bisect.bisect_left(rows, bound, key=lambda row: id_tuple(row[0]))
    else:
        high = _position(rows, end)
    return [as_entry(row) for row in rows[low:high]]


def _backward_commands(p: int, owner: str, before: str | None, n: int) -> list[Any]:
    high = "+" if before is None else f"({before}"
    man = keys.manifest(p, owner)
    commands: list[Any] = [("XREVRANGE", keys.log(p, owner), high, "-", "COUNT", n),
                           ("ZRANGE", man, *mf.before(before))]  # fmt: skip
    if before is not None:
        commands.append(("ZRANGE", man, *mf.at_or_after(before)))
    return commands


def _decide_backward(replies: list[Any], before: str | None) -> _Forward:
    rows = _rows(replies[0])
    if rows:
        return _Forward(None, rows)
    if before is not None and replies[2]:
        holding = Segment.parse(replies[2][0])
        if id_tuple(holding.first) < id_tuple(before):
            return _Forward(holding, [])
    return _Forward(Segment.parse(replies[1][0]) if replies[1] else None, [])


def _before(rows: list[Row], before: str | None) -> list[Entry]:
    high = (
        len(rows)
        if before is None
        else bisect.bisect_left(rows, id_tuple(before), key=lambda row: id_tuple(row[0]))
    )
    return [as_entry(row) for row in reversed(rows[:high])]


class _Segments:
    """Loads a manifest segment's entries through the cache, checking its checksum."""

    def __init__(self, archive: Archive | None, cache: SegmentCache | None) -> None:
        self.archive = archive
        self.cache = cache if cache is not None else SHARED

    def load(self, owner: str, seg: Segment) -> list[Row]:
        found = self.cache.get(seg.name, seg.sha256)
        if found is not None:
            return found
        if self.archive is None:
            raise ArchiveConfigError(
                f"owner {owner}'s older log is archived ({seg.name}) but archive_url is not "
                "set: set MEMSTREAM_ARCHIVE_URL to read it"
            )
        data = self.archive.get(seg.name)
        entries = decode(seg.name, data, size=seg.size, digest=seg.sha256, owner=owner)
        self.cache.put(seg.name, seg.sha256, entries, seg.raw)
        return entries


class ColdLog(_Segments):
    """Blocking read-through over one deployment."""

    def __init__(
        self, client: redis.Redis, archive: Archive | None, cache: SegmentCache | None = None
    ) -> None:
        super().__init__(archive, cache)
        self.client = client

    def _snapshot(self, commands: list[Any]) -> list[Any]:
        pipe = self.client.pipeline(transaction=True)
        for c in commands:
            pipe.execute_command(*c)  # type: ignore[no-untyped-call]
        return list(pipe.execute())

    def forward(
        self, p: int, owner: str, since: str | None = None, end: str = "+", page: int = PAGE
    ) -> Iterator[Entry]:
        """Entries after ``since`` (exclusive; None: from the first) up to ``end``
        (an id, inclusive; ``(id`` exclusive; ``+`` for all), oldest first."""
        cursor = since
        while True:
            step = _decide_forward(self._snapshot(_forward_commands(p, owner, cursor, end, page)),
                                   end)  # fmt: skip
            if step.seg is not None:
                yield from _in_range(self.load(owner, step.seg), cursor, end)
                cursor = step.seg.last
                continue
            yield from step.rows
            if len(step.rows) < page:
                return
            cursor = step.rows[-1][0]

    def backward(
        self, p: int, owner: str, before: str | None = None, page: int = PAGE
    ) -> Iterator[Entry]:
        """Entries before ``before`` (exclusive; None: from the newest), newest first."""
        while True:
            step = _decide_backward(self._snapshot(_backward_commands(p, owner, before, page)),
                                    before)  # fmt: skip
            if step.seg is None and not step.rows:
                return
            if step.seg is not None:
                rows = _before(self.load(owner, step.seg), before)
                before = step.seg.first
            else:
                rows = step.rows
                before = rows[-1][0]
            yield from rows


class AsyncColdLog(_Segments):
    """The asyncio twin of :class:`ColdLog` (same steps, same guarantees)."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        archive: Archive | None,
        cache: SegmentCache | None = None,
    ) -> None:
        super().__init__(archive, cache)
        self.client = client

    async def _snapshot(self, commands: list[Any]) -> list[Any]:
        pipe = self.client.pipeline(transaction=True)
        for c in commands:
            pipe.execute_command(*c)
        return list(await pipe.execute())

    async def _load(self, owner: str, seg: Segment) -> list[Row]:
        found = self.cache.get(seg.name, seg.sha256)
        if found is not None:
            return found
        return await asyncio.to_thread(self.load, owner, seg)

    async def forward(
        self, p: int, owner: str, since: str | None = None, end: str = "+", page: int = PAGE
    ) -> AsyncIterator[Entry]:
        cursor = since
        while True:
            replies = await self._snapshot(_forward_commands(p, owner, cursor, end, page))
            step = _decide_forward(replies, end)
            if step.seg is not None:
                for e in _in_range(await self._load(owner, step.seg), cursor, end):
                    yield e
                cursor = step.seg.last
                continue
            for e in step.rows:
                yield e
            if len(step.rows) < page:
                return
            cursor = step.rows[-1][0]

    async def backward(
        self, p: int, owner: str, before: str | None = None, page: int = PAGE
    ) -> AsyncIterator[Entry]:
        while True:
            replies = await self._snapshot(_backward_commands(p, owner, before, page))
            step = _decide_backward(replies, before)
            if step.seg is None and not step.rows:
                return
            if step.seg is not None:
                rows = _before(await self._load(owner, step.seg), before)
                before = step.seg.first
            else:
                rows = step.rows
                before = rows[-1][0]
            for e in rows:
                yield e
