"""Whether a stored message vector is live: its session's history still exists.

A message lives as long as its session's history key (docs/ttl.md): that key expires
``ttl_s`` after the session's newest message (the session's chosen TTL, else the
deployment's ``history_ttl_s``), never before a ``ttl.extended`` floor, and is recomputed
from merged state by every change (``SESSEXP``). That life changes after a vector is
written (each message slides it, a later choice shortens it), so it is not stored in each
vector: rewriting every vector of a session per message would cost what the history
costs once. Semantic search asks the history instead: one ``EXISTS`` per session among
the candidate vectors, pipelined in one round trip with the sessions' life boundaries
(:mod:`.session_life`): a session id used again after its history expired has its
history key again, but only the vectors of its current life count.

Convergent and replay-safe because the history key's existence is: its expiry is
computed from order-free merged state, and a session whose computed time has passed is
dropped at once, in a live run and in a replay alike, so a replay never brings its
vectors back. The vector's own stored expiry (``ts + history_ttl_s``, raised by
extensions and by a chosen TTL longer than the default: VFLOOR, VTTL) still bounds it:
it is when the vector's storage may be pruned.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from memstream.producers import keys

from .base import Query
from .history import history_key
from .session_life import read_boundaries

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from .message_rows import RefIndex


def session_of(ref: str) -> str:
    """The session of a message vector's id (``<session>:<version>``)."""
    return ref.partition(":")[0]


def live_sessions(
    pk: keys.Projection, owner: str, sessions: Sequence[str]
) -> Query[dict[str, bytes]]:
    """The ``sessions`` whose history key exists, each with the start of its current life
    (:mod:`.session_life`; b"" when every message counts): their message vectors at or
    after it are live. One round trip: an ``EXISTS`` per session, one ``HMGET``."""
    names = sorted(set(sessions))
    bounds = read_boundaries(pk, owner, names)

    def parse(replies: list[Any]) -> dict[str, bytes]:
        start = bounds.parse(replies[len(names) :])
        assert isinstance(start, dict)  # one stage
        return {name: start[name] for name, n in zip(names, replies, strict=False) if int(n)}

    exists = [("EXISTS", history_key(pk, owner, name)) for name in names]
    return Query([*exists, *bounds.commands], parse)


async def living(
    r: Any, pk: keys.Projection, owner: str, refs: Sequence[str], rows: list[int]
) -> list[int]:
    """The ``rows`` (indexes into ``refs``) whose session's history still exists, and
    whose message is of the session's current life."""
    if not rows:
        return rows
    sessions = [session_of(refs[i]) for i in rows]
    alive: dict[str, bytes] = await r.run(live_sessions(pk, owner, sessions))
    return [
        i for i, name in zip(rows, sessions, strict=True)
        if name in alive and refs[i].partition(":")[2].encode() >= alive[name]
    ]  # fmt: skip


async def living_rows(
    r: Any, pk: keys.Projection, owner: str, index: RefIndex, keep: npt.NDArray[np.bool_]
) -> npt.NDArray[np.bool_]:
    """``keep`` (a mask over the rows of ``index``) less the rows whose session's history
    no longer exists, or that are older than their session's current life: the same
    reads as :func:`living`."""
    import numpy as np

    # The candidate sessions: a count per session code, linear (np.unique would sort).
    codes = np.flatnonzero(np.bincount(index.codes[keep], minlength=len(index.sessions)))
    if not len(codes):
        return keep
    alive: dict[str, bytes] = await r.run(
        live_sessions(pk, owner, [index.sessions[code] for code in codes.tolist()])
    )
    live = np.asarray([name in alive for name in index.sessions], dtype=np.bool_)
    kept: npt.NDArray[np.bool_] = keep & live[index.codes]
    if any(alive.values()):
        start = np.asarray([alive.get(name, b"") for name in index.sessions], dtype=np.bytes_)
        kept &= index.versions >= start[index.codes]
    return kept
