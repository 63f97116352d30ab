"""Conversation history per owner and session.

Convergence: messages live in a lexicographic sorted set whose members start with the
message's sortable log id, so order is log order whatever the delivery order; the cap
keeps the newest N by that id; ``history.cleared`` raises a watermark, and a message
at or below it is dropped even when it arrives after the clear.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar, NamedTuple

from msgpack import unpackb

from memstream.producers import keys
from memstream.producers.entry import StoredEvent
from memstream.producers.events import SessionStarted, SessionTtlSet
from memstream.producers.events_live import TtlExtended
from memstream.producers.events_messages import MessageAppended

from .base import ApplyContext, Projection, Query
from .codec import pack
from .ops import VERSION_LEN, Writes, sortable
from .results import Message, message_of
from .session_life import boundary_of, current, life_key, ttl_event, ttl_events_field


def history_key(pk: keys.Projection, owner: str, session: str) -> str:
    return pk.key("hist", owner, session)


def watermark(pk: keys.Projection, owner: str, session: str) -> tuple[str, str]:
    return pk.key("wm", owner), f"hist:{session}"


def ttl_choice(pk: keys.Projection, owner: str, session: str) -> tuple[str, str]:
    """Where the session's own TTL choice is kept (LWW by log id): one hash per owner."""
    return pk.key("sttl", owner), session


def ttl_floor(pk: keys.Projection, owner: str, session: str) -> tuple[str, str]:
    """Where ``ttl.extended`` keeps the session's history expiry floor."""
    return keys.ttl_floor(pk, owner), f"hist:{session}"


class SessionKeys(NamedTuple):
    """Every key (and hash field) a session's history writes name, built together."""

    log: str
    mark: tuple[str, str]
    choice: tuple[str, str]
    floor: tuple[str, str]
    lives: str
    """The choice hash's field of the session's TTL events (.session_life)."""
    life: str
    """The session's life record (.session_life)."""


@functools.lru_cache(maxsize=8192)
def session_keys(pk: keys.Projection, owner: str, session: str) -> SessionKeys:
    """The keys of ``session``'s history. Cached: every message of a session names the
    same four, and building them one by one was a fifth of planning a message."""
    return SessionKeys(
        history_key(pk, owner, session), watermark(pk, owner, session),
        ttl_choice(pk, owner, session), ttl_floor(pk, owner, session),
        ttl_events_field(session), life_key(pk, owner, session),
    )  # fmt: skip


def message_body(msg: MessageAppended, ts_ms: int) -> dict[str, Any]:
    """A message as history stores and returns it (also read back from the log when a
    page reaches past the hot window: memstream.projections.reads_log)."""
    body: dict[str, Any] = {"role": msg.role, "content": msg.content, "ts": ts_ms}
    if msg.name is not None:
        body["name"] = msg.name
    if msg.meta:
        body["meta"] = msg.meta
    # v2 fields only when set: a v1 message reads back exactly as it did before.
    if msg.id is not None:
        body["id"] = msg.id
    if msg.tool_calls:
        body["tool_calls"] = [call.model_dump(exclude_none=True) for call in msg.tool_calls]
    if msg.tool_call_id is not None:
        body["tool_call_id"] = msg.tool_call_id
    if msg.additional_kwargs:
        body["additional_kwargs"] = msg.additional_kwargs
    return body


class History(Projection):
    name: ClassVar[str] = "history"
    # Not "life" (a session's life record, .session_life): counted here, `memstream stats`
    # would add one entry per session to the messages; it is shown as its own type.
    key_names: ClassVar[frozenset[str]] = frozenset({"hist", "wm", "sttl"})
    handles: ClassVar[frozenset[str]] = frozenset(
        {"message.appended", "history.cleared", "ttl.extended", "session.started",
         "session.ttl_set"}
    )  # fmt: skip

    def apply(self, event: StoredEvent, ctx: ApplyContext, writes: Writes) -> None:
        session = event.session
        payload = event.event
        if isinstance(payload, MessageAppended):
            # The common event, first and with the session's keys from one cache hit.
            # No skip of an expired message: its session may have chosen a longer TTL
            # than the default. The exact expiry (SESSEXP) drops a session whose newest
            # message has outlived its TTL, so replay still never brings one back.
            if session is not None:
                sk = session_keys(ctx.keys, event.owner, session)
                body = pack(message_body(payload, event.ts_ms))
                writes.zlog(
                    sk.log, sortable(event.log_id), body, cap=ctx.settings.history_cap,
                    watermark=sk.mark,
                )  # fmt: skip
                self._expire(ctx, writes, sk)
            return
        if isinstance(payload, TtlExtended):
            at = event.ts_ms + payload.seconds * 1000
            if session is None:
                return
            sk = session_keys(ctx.keys, event.owner, session)
            # Whether or not it is past: a replay must see the floors a live run saw when
            # it walks the session's lives (.session_life), and the walk runs again.
            writes.ttl_event(sk.choice[0], sk.lives, ttl_event(event.log_id, "e", at))
            if at > ctx.now_ms:
                # The floor is raised even with no deployment history_ttl_s: the session
                # may have chosen its own TTL. The expiry is then recomputed from merged
                # state, so a session with no TTL at all gains none.
                writes.hmax(sk.floor[0], sk.floor[1], f"{int(at):013d}")
                writes.expire_at(sk.floor[0], at)
            self._expire(ctx, writes, sk)
            return
        if session is None:
            return
        sk = session_keys(ctx.keys, event.owner, session)
        version = sortable(event.log_id)
        if isinstance(payload, SessionStarted | SessionTtlSet):
            if isinstance(payload, SessionStarted) and payload.ttl_s is None:
                return  # a start without a choice changes nothing
            value = b"d" if payload.ttl_s is None else b"%d" % (payload.ttl_s * 1000)
            writes.lww(sk.choice[0], sk.choice[1], version, value)
            # Every choice, not only the winner: each gap between two messages is judged
            # by the TTL in effect then (.session_life).
            kind, ms = ("d", 0) if payload.ttl_s is None else ("c", payload.ttl_s * 1000)
            writes.ttl_event(sk.choice[0], sk.lives, ttl_event(event.log_id, kind, ms))
        else:  # history.cleared
            writes.clear(sk.log, sk.mark, version)
            ttl = ctx.settings.history_ttl_s
            if ttl is not None and not ctx.expired(event, ttl):
                # Only clears extend the watermark's life: a message arriving before the
                # clear that creates it would otherwise be a no-op in one order and not in
                # another. The latest clear + TTL outlives every message it must stop. (A
                # past time would delete the owner's whole watermark hash: skipped.)
                writes.expire_at(sk.mark[0], event.ts_ms + ttl * 1000)
        self._expire(ctx, writes, sk)

    @staticmethod
    def _expire(ctx: ApplyContext, writes: Writes, sk: SessionKeys) -> None:
        # Every change to a session recomputes its expiry from merged state (docs/ttl.md).
        default_ms = (ctx.settings.history_ttl_s or 0) * 1000
        writes.session_expiry(
            sk.log, sk.choice, sk.floor, default_ms, cap=ctx.settings.history_cap, life=sk.life
        )


def read_history(
    pk: keys.Projection, owner: str, session: str, last: int
) -> Query[list[dict[str, Any]]]:
    """The last ``last`` messages of a session as dicts, oldest first (the pages that
    reach into the log merge these with the log's: memstream.projections.reads_log)."""
    key = history_key(pk, owner, session)
    life = life_key(pk, owner, session)

    def parse(replies: list[Any]) -> list[dict[str, Any]]:
        # split_versioned inlined: this runs for every message of every history read.
        out = []
        for raw in current(replies[0], boundary_of(replies[1])):
            item: dict[str, Any] = {"log_id": member_log_id(raw)}
            item.update(unpackb(raw[VERSION_LEN:], raw=False))
            out.append(item)
        return out

    return Query([("ZRANGE", key, -last, -1), ("GET", life)], parse, (key, life))


@functools.lru_cache(maxsize=1024)
def read_messages(pk: keys.Projection, owner: str, session: str, last: int) -> Query[list[Message]]:
    """The last ``last`` messages of a session as typed :class:`Message` results, oldest
    first: ``history(last=...)``'s hot read, which needs no intermediate dicts.

    Cached: a plan is immutable and an agent rereads the same few sessions; building the
    key and the plan was a few percent of a read's round trip."""
    key = history_key(pk, owner, session)
    life = life_key(pk, owner, session)
    # The life record in the same pipeline: a session used again after it expired shows
    # only its current life (.session_life), at no extra round trip.
    return Query(
        (("ZRANGE", key, -last, -1), ("GET", life)), _messages, (key, life),
        archived=False,
    )  # fmt: skip


def _messages(replies: list[Any]) -> list[Message]:
    # One pass straight from the members to the results: no dict per message, no
    # Message.of (its **kwargs and frozen __init__ cost as much as the decode).
    return [
        message_of(member_log_id(raw), unpackb(raw[VERSION_LEN:], raw=False))
        for raw in current(replies[0], boundary_of(replies[1]))
    ]


def member_log_id(raw: bytes) -> str:
    """:func:`.ops.log_id_of` for a history member ``raw``
    (b"<ms:013d>-<seq:010d><msgpack>"): its prefix without the zero padding, stripped as
    bytes (cheaper than int() and a format; it runs for every message of every read)."""
    return (
        (raw[:13].lstrip(_ZERO) or _ZERO) + b"-" + (raw[14:VERSION_LEN].lstrip(_ZERO) or _ZERO)
    ).decode()


_ZERO = b"0"
