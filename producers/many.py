"""``append_many`` on the wire: prepared appends grouped into ``FCALL ms_append_many``.

Sans-I/O like :mod:`.core`: the producers only send the round trips this module plans and
hand the replies back. Appends are grouped by partition (the call takes one partition's
keys), in call order within a partition, so every owner's events keep their order; a call
carries at most :data:`PER_CALL` events and a round trip at most :data:`PER_TRIP`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from . import keys
from .core import AppendCore, Prepared, command
from .receipt import Receipt

PER_CALL = 250
"""Events per ``ms_append_many`` call: the call blocks Redis while it runs (about 3 ms at
this size on a small machine), and more per call saves little more."""

PER_TRIP = 1000
"""Events per pipelined round trip, each trip with its own ``append_deadline_s``."""

RETRY_MANY_S = 60.0
"""After a server answered that ``ms_append_many`` is not loaded, a producer sends single
``ms_append`` calls for this long before it tries ``ms_append_many`` again (so a producer
that outlives the ``memstream init`` that loads it goes back to it)."""

_MISSING = "function not found"


@dataclass(frozen=True, slots=True)
class Call:
    """One ``ms_append_many`` command and the indexes (into the batch) of its events."""

    partition: int
    indexes: list[int]
    command: tuple[Any, ...]


def plan_calls(core: AppendCore, prepared: Sequence[Prepared]) -> list[list[Call]]:
    """Round trips of calls covering every prepared append; raises
    :class:`InvalidInputError` (before any I/O) for an append over ``max_event_bytes``."""
    n = core.deployment.partitions
    by_partition: dict[int, list[int]] = {}
    for i, p in enumerate(prepared):
        core.check_size(p)
        by_partition.setdefault(keys.partition(p.owner, n), []).append(i)
    calls = []
    for partition, indexes in by_partition.items():
        for start in range(0, len(indexes), PER_CALL):
            chunk = indexes[start : start + PER_CALL]
            calls.append(Call(partition, chunk, _command(partition, chunk, prepared)))
    trips: list[list[Call]] = []
    size = PER_TRIP
    for call in calls:
        if size + len(call.indexes) > PER_TRIP:
            trips.append([])
            size = 0
        trips[-1].append(call)
        size += len(call.indexes)
    return trips


def _command(partition: int, chunk: list[int], prepared: Sequence[Prepared]) -> tuple[Any, ...]:
    positions: dict[str, int] = {}  # owner -> position of its log key among KEYS
    groups: list[Any] = []
    for i in chunk:
        p = prepared[i]
        k = positions.setdefault(p.owner, len(positions) + 2)
        groups += (k, len(p.args), *p.args)
    logs = [keys.log(partition, owner) for owner in positions]
    return ("FCALL", "ms_append_many", 1 + len(logs), keys.feed(partition), *logs, *groups)


class Singles(list[Any]):
    """The replies of a call's events sent as single ``ms_append`` calls (the fallback)."""


def lacks_many(replies: Sequence[Any]) -> bool:
    """True when the server has no ``ms_append_many``: its library predates it (a
    deployment initialised by an older memstream), so ``FCALL`` answers "Function not
    found". Nothing was written by such a call."""
    return any(isinstance(r, redis.ResponseError) and _MISSING in str(r).lower() for r in replies)


def single_commands(trip: Sequence[Call], prepared: Sequence[Prepared]) -> list[tuple[Any, ...]]:
    """The trip as one ``FCALL ms_append`` per event, in the trip's order (each owner's
    events keep their order, and each carries its eid, so a resend stores nothing twice)."""
    return [command(prepared[i].owner, c.partition, prepared[i].args)
            for c in trip for i in c.indexes]  # fmt: skip


def regroup(trip: Sequence[Call], replies: Sequence[Any]) -> list[Any]:
    """The flat replies of :func:`single_commands`, one :class:`Singles` per call."""
    out: list[Any] = []
    at = 0
    for c in trip:
        out.append(Singles(replies[at : at + len(c.indexes)]))
        at += len(c.indexes)
    return out


def spread(call: Call, reply: Any) -> list[Any]:
    """Per-event replies of one call, in ``call.indexes`` order: ``(log_id, feed_id)``,
    or the :class:`redis.ResponseError` ``ms_append`` would have answered for it."""
    if isinstance(reply, Singles):
        return list(reply)
    if isinstance(reply, redis.RedisError):
        return [reply] * len(call.indexes)
    ids, refused = reply
    out: list[Any] = list(ids)
    for at, reason in zip(refused[0::2], refused[1::2], strict=True):
        text = reason.decode() if isinstance(reason, bytes) else str(reason)
        out[int(at)] = redis.ResponseError(f"memstream: {text}")
    return out


def receipt(prepared: Prepared, partition: int, reply: Any) -> Receipt:
    """The receipt of one stored event of a call."""
    log_id, feed_id = reply
    return Receipt(
        owner=prepared.owner,
        partition=partition,
        log_id=log_id.decode() if isinstance(log_id, bytes) else str(log_id),
        feed_id=feed_id.decode() if isinstance(feed_id, bytes) else str(feed_id),
        eid=prepared.eid,
    )
