"""Turn a batch of feed entries into ack-gated writes: decode, route, dead-letter.

Runs off the event loop (it is the CPU part of a batch). Nothing here raises on bad
data: each bad entry becomes a DLQ write with a readable reason, acked by the same gate
as good ones, so a worker never stops on input it cannot use.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from memstream.producers import keys
from memstream.producers.codec import DecodeError
from memstream.producers.entry import StoredEvent, decode_entry
from memstream.producers.errors import InvalidIdError
from memstream.producers.events import OwnerForgotten
from memstream.producers.settings import Settings
from memstream.projections.base import ApplyContext, Projection
from memstream.projections.notify import change_record
from memstream.projections.op_checks import OpRangeError, check_ops
from memstream.projections.ops import Op, Writes, sortable
from memstream.projections.registry import by_type
from memstream.projections.vectors import batching

Fields = Mapping[bytes, bytes]
_LOG_ID = re.compile(rb"(\d{1,20})-(\d{1,20})")
MAX_LOG_MS = 10**13 - 1
MAX_LOG_SEQ = 10**10 - 1
"""Log ids workers fold: sortable ids (projections/ops.py) have 13 + 10 digits, so an id
beyond them (only a raw XADD with an explicit id can make one) would sort wrongly."""
FETCH_ERROR = b"\0fetch-error"
"""Marker field of a log entry ms_fetch could not read (workers/lua/fetch.lua)."""
UNSIGNED = b"\0unsigned"
"""Marker field ms_fetch adds to an entry without a valid signature when the partition
does not require one: the worker applies it and counts it (docs/security.md)."""
MAX_ECHO = 200
"""Longest piece of an entry quoted in a dead-letter reason."""


@dataclass(slots=True)
class FeedEntry:
    """One delivered feed entry. Treat it as read-only (``dataclasses.replace`` makes a
    changed copy); not ``frozen``, whose ``__init__`` costs twice as much, and a worker
    builds one per event (as it does a :class:`Pointer`)."""

    feed_id: str
    fields: Fields
    deliveries: int = 1
    poison: str | None = None
    """Set by the lane (workers/suspects.py) once the entry is known to kill or fail
    the workers that apply it alone: the planner dead-letters it with this reason."""


@dataclass(slots=True)
class Pointer:
    """A feed entry's (owner, log id), checked. Read-only by convention, as FeedEntry."""

    owner: str
    log_id: str


@dataclass(slots=True)
class Outcome:
    """Counts of one planned batch, for metrics."""

    applied: int = 0
    dead: int = 0
    unknown: int = 0
    entries: list[tuple[str, list[Op]]] = field(default_factory=list)
    owners: dict[str, tuple[str, str]] = field(default_factory=dict)
    """feed id -> (owner, sortable log id) of each folded event: ms_apply's owner fence."""
    forgets: int = 0
    """``owner.forgotten`` events in the batch: the worker runs the filed forgets after
    the call (the deletion needs a keyspace scan, which cannot run inside ms_apply)."""
    by_type: dict[tuple[str, str], int] = field(default_factory=dict)
    """(event type, "applied" | "dead" | "unknown") -> count, for the Prometheus metrics;
    an entry dead-lettered before its type was read counts under type ``""``."""


def parse_pointer(p: int, partitions: int, fields: Fields) -> Pointer:
    """Validate a feed entry's (owner, log id) pointer; raise DecodeError with the reason."""
    raw_owner, raw_log = fields.get(b"o"), fields.get(b"l")
    if raw_owner is None or raw_log is None:
        raise DecodeError("feed entry", "needs fields 'o' (owner) and 'l' (log id)")
    owner, owner_p = _owner(raw_owner, partitions)
    found = _LOG_ID.fullmatch(raw_log)
    if found is None:
        raise DecodeError(
            "feed entry l",
            "must be a stream id like 1700000000000-0",
            raw_log.decode("utf-8", "replace")[:MAX_ECHO],
        )
    log_id = raw_log.decode()  # ASCII digits and a dash: the pattern matched
    ms, seq = found.group(1, 2)
    # Only a long digit run can be out of range (with leading zeros it may still fit).
    if (len(ms) > 13 or len(seq) > 10) and (int(ms) > MAX_LOG_MS or int(seq) > MAX_LOG_SEQ):
        raise DecodeError(
            "feed entry l",
            f"log id {log_id} is out of range (at most {MAX_LOG_MS}-{MAX_LOG_SEQ}): "
            "ms_append never makes one",
        )
    if owner_p != p:
        raise DecodeError("feed entry o", f"owner {owner} does not belong to partition {p}")
    return Pointer(owner, log_id)


@functools.lru_cache(maxsize=16384)
def _owner(raw: bytes, partitions: int) -> tuple[str, int]:
    # Cached: a feed names the same owners again and again, and this check ran for
    # every entry. A bad owner raises, and raised calls are not cached.
    try:
        owner = keys.check_id(raw.decode("utf-8", "replace"), "owner")
    except InvalidIdError as e:
        raise DecodeError("feed entry o", str(e)) from e
    return owner, keys.partition(owner, partitions)


class Planner:
    """Pure: feed entries + their log entries -> ops per entry. Shared by replay."""

    def __init__(
        self, projections: Sequence[Projection], settings: Settings, max_deliveries: int
    ) -> None:
        self.routes = by_type(projections)
        self.settings = settings
        self.max_deliveries = max_deliveries
        self._checked_types = frozenset(
            t for t, folders in self.routes.items() if not all(map(built_in, folders))
        )
        """Event types that a projection of the user's folds: their ops are checked here.
        The built-in projections' ops are not (it was a fifth of planning an event):
        ms_apply checks every op again before its entry's first write and dead-letters
        an entry whose ops break a rule, alone, so the gate holds either way."""

        self.batching = batching(projections)
        """Projections that see the whole batch before it is applied (embeddings)."""
        for projection in self.batching:
            projection.warm(settings)
        self._embedded = {
            flag: frozenset[bytes]().union(*(p.embedded_types(flag) for p in self.batching))
            for flag in (True, False)
        }
        """Event types ``prepare_batch`` embeds, by ``embed_messages`` (see :meth:`embeds`):
        computed once, from each projection's own :meth:`~.Vectors.embedded_types`."""

    def prepare(
        self, settings: Settings, pointers: Mapping[str, Pointer | DecodeError],
        logs: Mapping[str, Fields | None],
    ) -> None:  # fmt: skip
        """Show the whole batch (``pointers`` and ``logs`` by feed id) once to the
        projections that work per batch (embeddings), before any of it is planned."""
        for projection in self.batching:
            projection.prepare_batch(settings, pointers, logs)

    def embeds(self, settings: Settings, logs: Mapping[str, Fields | None]) -> bool:
        """True when :meth:`prepare` has work in this batch (``logs``, by feed id): an
        embedder is configured and an entry is of a type a batching projection embeds.

        The types are ``Vectors.prepare_batch``'s own, which skips every other entry: a
        batch without one (every batch of messages, with ``embed_messages`` off, the
        default) used to hop to a thread for nothing, which cost each small batch more
        CPU than planning it and, waiting for the GIL, up to a switch interval (5 ms) of
        freshness. Skipping it changes nothing stored: an event whose vector was not made
        in bulk is embedded alone when it is applied."""
        if not self.batching or settings.embedder == "none":
            return False
        wanted = self._embedded[settings.embed_messages]
        return any(f is not None and f.get(b"type") in wanted for f in logs.values())

    def event_writes(self, event: StoredEvent, ctx: ApplyContext) -> Writes:
        """The ops of one decoded event across every projection that folds it."""
        writes = Writes()
        for projection in self.routes.get(event.type, ()):
            projection.apply(event, ctx, writes)
        change_record(event, ctx, writes)
        if event.type in self._checked_types:
            check_ops(writes.ops)  # a readable reason for the user's projection bug
        return writes

    def plan(
        self,
        ctx: ApplyContext,
        group: str,
        entries: Sequence[FeedEntry],
        pointers: Mapping[str, Pointer | DecodeError],
        logs: Mapping[str, Fields | None],
        *,
        out: Outcome | None = None,
    ) -> Outcome:
        """Plan ``entries`` (with their ``pointers`` and fetched ``logs``, by feed id) for
        ``group`` under ``ctx``; adds to ``out`` when given (a batch planned in pieces)."""
        if out is None:  # a whole batch at once; one planned in pieces was prepared first
            self.prepare(ctx.settings, pointers, logs)
        out = Outcome() if out is None else out
        stats = ctx.keys.partition_key("stats")
        for entry in entries:
            fid = entry.feed_id
            pointer = pointers[fid]
            etype, result = "", "applied"
            raw = logs.get(fid)
            # The common case inline (a good pointer, its entry read): the checks that
            # name a reason run only when one of these fails.
            fine = (
                type(pointer) is Pointer
                and raw is not None
                and entry.poison is None
                and FETCH_ERROR not in raw
            )
            reason = None if fine else self._reason(entry, pointer, logs)
            if reason is None:
                assert isinstance(pointer, Pointer) and raw is not None
                try:
                    event = decode_entry(pointer.owner, pointer.log_id, raw)
                    etype = event.type[:64]
                    if event.known:
                        ops = self.event_writes(event, ctx).ops
                        out.owners[fid] = (event.owner, sortable(event.log_id))
                        out.applied += 1
                        out.forgets += event.type == OwnerForgotten.TYPE
                    else:
                        counted = Writes()
                        counted.hincr(stats, "unknown", 1)
                        counted.hincr(stats, f"unknown:{event.type[:64]}", 1)
                        ops = counted.ops
                        out.unknown += 1
                        result = "unknown"
                    if not own_pointer(fid, pointer):
                        ops = [pointer_check(ctx, fid, pointer), *ops]
                    if UNSIGNED in raw:
                        ops = [*ops, ("HINCR", stats, "unsigned", 1)]
                except OpRangeError as e:
                    reason = f"out of range: {e}"
                except DecodeError as e:
                    reason = f"undecodable: {e}"
                except Exception as e:  # a projection bug must not stop the worker
                    reason = f"projection failed: {type(e).__name__}: {e}"
            if reason is not None:
                ops = self._dead_letter(ctx, group, entry, pointer, reason).ops
                out.dead += 1
                result = "dead"
            out.by_type[etype, result] = out.by_type.get((etype, result), 0) + 1
            out.entries.append((fid, ops))
        return out

    def _reason(
        self, entry: FeedEntry, pointer: Pointer | DecodeError, logs: Mapping[str, Fields | None]
    ) -> str | None:
        if isinstance(pointer, DecodeError):
            return f"bad feed pointer: {pointer}"
        if entry.poison is not None:
            return entry.poison
        raw = logs.get(entry.feed_id)
        if raw is None:
            return f"log entry {pointer.log_id} of {pointer.owner} is missing"
        failed = raw.get(FETCH_ERROR)
        if failed is not None:
            text = failed.decode("utf-8", "replace")[:MAX_ECHO]
            return f"log entry {pointer.log_id} of {pointer.owner} cannot be read: {text}"
        return None

    @staticmethod
    def _dead_letter(
        ctx: ApplyContext, group: str, entry: FeedEntry, pointer: Pointer | DecodeError,
        reason: str,
    ) -> Writes:  # fmt: skip
        writes = Writes()
        owner = pointer.owner if isinstance(pointer, Pointer) else ""
        log_id = pointer.log_id if isinstance(pointer, Pointer) else ""
        fields: list[tuple[str, str | bytes]] = [
            ("feed_id", entry.feed_id), ("owner", owner), ("log_id", log_id),
            ("group", group), ("deliveries", str(entry.deliveries)), ("reason", reason),
        ]  # fmt: skip
        if not isinstance(pointer, Pointer):
            # The raw owner of a bad pointer, capped: forget selects by this field.
            fields.append(("pointer_owner", entry.fields.get(b"o", b"")[:MAX_ECHO]))
        writes.xadd(keys.dlq(ctx.keys.p), fields)
        writes.hincr(ctx.keys.partition_key("stats"), "dlq", 1)
        return writes


def built_in(projection: Projection) -> bool:
    """True for memstream's own projections, whose ops follow the rules by construction
    (their inputs are validated events; tests/test_hostile_property.py fuzzes them)."""
    return type(projection).__module__.startswith("memstream.projections.")


def own_pointer(feed_id: str, pointer: Pointer) -> bool:
    """True when the pointer is its log entry's own: ``ms_append`` gives the log entry
    the id of its feed entry, so any other pointer to it is a duplicate or a forgery."""
    return feed_id == pointer.log_id


def pointer_check(ctx: ApplyContext, feed_id: str, pointer: Pointer) -> Op:
    """The PTR op that lets ``ms_apply`` decide a pointer that is not its entry's own: a
    ``dlq retry`` re-queue (one-shot record) or one older than the rule, else refused."""
    p = ctx.keys.p
    return ("PTR", keys.retry(p, pointer.owner, pointer.log_id), keys.conf(p), feed_id,
            pointer.log_id)  # fmt: skip
