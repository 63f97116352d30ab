"""An owner's sessions, per-session data, and the session chain.

Convergence: created time is a ZMIN and last-active a ZMAX over event times (both
commute); session data and chain links are last-writer-wins fields versioned by log id.
Session data follows the session's own TTL (docs/ttl.md): its expiry is recomputed from
merged state (newest write, LWW choice, floor) by ``SESSEXPD``; the index and chain are
per owner, shared by its sessions, and keep the deployment's ``session_ttl_s``.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

from memstream.producers import keys
from memstream.producers.entry import StoredEvent
from memstream.producers.events import SessionDataSet, SessionStarted, SessionTtlSet
from memstream.producers.events_live import TtlExtended
from memstream.producers.events_messages import MessageAppended

from .base import ApplyContext, Projection, Query
from .codec import pack, split_versioned
from .history import ttl_choice
from .ops import Writes, sortable

MAX_CHAIN = 1000
"""Chain reads stop here: links come from events, so a cycle or a very long chain must
not make a read loop forever."""


def created_key(pk: keys.Projection, owner: str) -> str:
    return pk.key("sess_created", owner)


def active_key(pk: keys.Projection, owner: str) -> str:
    return pk.key("sess_active", owner)


def data_key(pk: keys.Projection, owner: str, session: str) -> str:
    return pk.key("sess_data", owner, session)


def chain_key(pk: keys.Projection, owner: str) -> str:
    return pk.key("sess_chain", owner)


class Sessions(Projection):
    name: ClassVar[str] = "sessions"
    key_names: ClassVar[frozenset[str]] = frozenset(
        {"sess_created", "sess_active", "sess_data", "sess_chain"}
    )
    handles: ClassVar[frozenset[str]] = frozenset(
        {"session.started", "session.data_set", "message.appended", "history.cleared",
         "step.recorded", "ttl.extended", "session.ttl_set"}
    )  # fmt: skip

    def apply(self, event: StoredEvent, ctx: ApplyContext, writes: Writes) -> None:
        session = event.session
        ttl = ctx.settings.session_ttl_s
        payload = event.event
        if type(payload) is MessageAppended:  # the common event: activity, nothing else
            if session is not None and not ctx.expired(event, ttl):
                self._index(event, ctx, writes, session, ttl)
            return
        if isinstance(payload, TtlExtended):
            _extend(event, payload.seconds, ctx, writes)
            return
        if session is None:
            return
        if isinstance(payload, SessionDataSet):
            # No skip when the deployment TTL has passed: the session may have chosen a
            # longer one. The exact expiry drops data whose TTL has passed, so replay still
            # never brings it back (as for history).
            key = data_key(ctx.keys, event.owner, session)
            writes.lww(key, payload.key, sortable(event.log_id), pack(payload.value))
            _data_expiry(event, ctx, writes, session)
        elif isinstance(payload, SessionTtlSet) or (
            isinstance(payload, SessionStarted) and payload.ttl_s is not None
        ):
            # History writes the choice (an LWW field); the expiry op reads it at the end
            # of the call, so the order of the two projections' ops does not matter.
            _data_expiry(event, ctx, writes, session)
        if isinstance(payload, SessionTtlSet) or ctx.expired(event, ttl):
            return  # a TTL choice is not activity: the index and chain do not move
        self._index(event, ctx, writes, session, ttl)

    @staticmethod
    def _index(
        event: StoredEvent, ctx: ApplyContext, writes: Writes, session: str, ttl: int | None
    ) -> None:
        """The owner's session index (created, last active) and chain, with the
        deployment's ``session_ttl_s``: they are per owner, shared by all its sessions."""
        created, active, chain, floor = owner_keys(ctx.keys, event.owner)
        touched = [created, active]
        writes.zmin(created, session, event.ts_ms)
        writes.zmax(active, session, event.ts_ms)
        if isinstance(event.event, SessionStarted):
            touched.append(chain)
            writes.lww(chain, session, sortable(event.log_id), pack(event.event.previous))
        if ttl is not None:
            for key in touched:
                writes.expire_at_floor(key, event.ts_ms + ttl * 1000, floor)


@functools.lru_cache(maxsize=4096)
def owner_keys(
    pk: keys.Projection, owner: str
) -> tuple[str, str, str, tuple[str, str]]:  # fmt: skip
    """(created, last active, chain, index floor) of ``owner``. Cached: every event of
    an owner's sessions names them, and building them each time was a third of this
    projection's cost per message."""
    return (
        created_key(pk, owner),
        active_key(pk, owner),
        chain_key(pk, owner),
        index_floor(pk, owner),
    )


def index_floor(pk: keys.Projection, owner: str) -> tuple[str, str]:
    """TTL floor (raised by ``ttl.extended``) of the owner's session index and chain."""
    return keys.ttl_floor(pk, owner), "sessions"


def data_floor(pk: keys.Projection, owner: str, session: str) -> tuple[str, str]:
    return keys.ttl_floor(pk, owner), f"sess_data:{session}"


def _data_expiry(event: StoredEvent, ctx: ApplyContext, writes: Writes, session: str) -> None:
    """Recompute the session data's expiry from merged state (docs/ttl.md): its newest
    write plus the session's chosen TTL, else the deployment's ``session_ttl_s``."""
    pk, owner = ctx.keys, event.owner
    default_ms = (ctx.settings.session_ttl_s or 0) * 1000
    writes.session_data_expiry(
        data_key(pk, owner, session), ttl_choice(pk, owner, session),
        data_floor(pk, owner, session), default_ms,
    )  # fmt: skip


def _extend(event: StoredEvent, seconds: int, ctx: ApplyContext, writes: Writes) -> None:
    """``ttl.extended``: the index and chain (when the deployment gives them a TTL), plus
    the named session's data (whenever it has a TTL, chosen or by default)."""
    at, pk, owner = event.ts_ms + seconds * 1000, ctx.keys, event.owner
    if at <= ctx.now_ms:
        return
    if ctx.settings.session_ttl_s is not None:
        created, active, chain, floor = owner_keys(pk, owner)
        writes.extend_to([created, active, chain], at, floor)
    if event.session is not None:
        # Raise the floor, then recompute: an EXPAT would add an expiry to data that has
        # none (a session that chose 0), and the recompute keeps it without one.
        writes.extend_to([], at, data_floor(pk, owner, event.session))
        _data_expiry(event, ctx, writes, event.session)


def read_sessions(pk: keys.Projection, owner: str) -> Query[list[dict[str, Any]]]:
    """Sessions with created and last-active times (ms), most recently active first."""
    ck, ak = created_key(pk, owner), active_key(pk, owner)

    def parse(replies: list[Any]) -> list[dict[str, Any]]:
        created = {m.decode(): int(s) for m, s in replies[0]}
        return [
            {"session": m.decode(), "created_ms": created.get(m.decode()), "last_active_ms": int(s)}
            for m, s in replies[1]
        ]

    commands = [
        ("ZRANGE", ck, 0, -1, "WITHSCORES"),
        ("ZRANGE", ak, 0, -1, "REV", "WITHSCORES"),
    ]
    return Query(commands, _pairs(parse), (ck, ak))


def _pairs(parse: Any) -> Any:
    """RESP2 WITHSCORES replies are flat lists; pair them before parsing."""

    def wrapped(replies: list[Any]) -> Any:
        return parse([list(zip(r[0::2], r[1::2], strict=True)) for r in replies])

    return wrapped


def read_session_data(pk: keys.Projection, owner: str, session: str) -> Query[dict[str, Any]]:
    key = data_key(pk, owner, session)

    def parse(replies: list[Any]) -> dict[str, Any]:
        return {f.decode(): split_versioned(v)[1] for f, v in replies[0].items()}

    return Query([("HGETALL", key)], parse, (key,))


def read_session_chain(pk: keys.Projection, owner: str, session: str) -> Query[list[str]]:
    """``session`` then each previous session, newest first."""
    key = chain_key(pk, owner)

    def parse(replies: list[Any]) -> list[str]:
        links = {f.decode(): split_versioned(v)[1] for f, v in replies[0].items()}
        chain, seen = [session], {session}
        while len(chain) < MAX_CHAIN:
            prev = links.get(chain[-1])
            if prev is None or prev in seen:
                break
            chain.append(prev)
            seen.add(prev)
        return chain

    return Query([("HGETALL", key)], parse, (key,))
