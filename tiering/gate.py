"""What may be archived: the ack gate and the replay cutoff.

For one partition, :func:`archivable_bounds` returns, per owner, the newest log id that
every consumer group on the feed has acknowledged, capped at a running replay's cutoff
and below any dead letter (``dlq retry`` reads the hot log entry by id). It reads one
consistent snapshot (a MULTI on the partition's slot):

- ``heads``: every log entry at or below an owner's head existed, with its feed
  pointer, when the snapshot was taken;
- each group's pending entries and everything after the oldest last-delivered id: a
  pointer that is neither is acknowledged by that group (the feed is only trimmed
  below what every group still needs, so no unacked pointer can have gone).

An owner's entries are archivable strictly below its oldest unacked pointer, and up to
its head otherwise. A partition whose groups are far behind (more unacked pointers than
:data:`UNACKED_LIMIT`) is skipped for this pass: tiering a backlog can wait.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis

from memstream.producers import keys
from memstream.projections.ops import id_tuple

UNACKED_LIMIT = 10_000

IdT = tuple[int, int]


@dataclass
class Bounds:
    """Per owner: archive entries with id <= ``upto[owner]`` and < ``below[owner]``."""

    upto: dict[str, IdT] = field(default_factory=dict)
    below: dict[str, IdT] = field(default_factory=dict)
    skipped: str | None = None
    """Why the whole partition was skipped, or None."""

    def end(self, owner: str) -> Limit | None:
        """The tightest bound on ``owner``'s archivable ids, or None for none at all."""
        top = self.upto.get(owner)
        if top is None:
            return None
        low = self.below.get(owner)
        return tighter((top, True), (low, False) if low is not None else None)


Limit = tuple[IdT, bool]
"""An upper bound on log ids: (id, inclusive)."""


def tighter(a: Limit, b: Limit | None) -> Limit:
    if b is None:
        return a
    if a[0] != b[0]:
        return a if a[0] < b[0] else b
    return a if not a[1] else b


def xrange_max(limit: Limit) -> str:
    (ms, seq), inclusive = limit
    return f"{ms}-{seq}" if inclusive else f"({ms}-{seq}"


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _lower(bound: dict[str, IdT], owner: str, value: IdT) -> None:
    if owner not in bound or value < bound[owner]:
        bound[owner] = value


def _pointers(bounds: Bounds, rows: Iterable[Any]) -> None:
    for row in rows or ():
        if not row:
            continue  # a pending id whose entry was deleted (forget): nothing to guard
        fields = row[1] if isinstance(row, list | tuple) else row
        owner, log_id = fields.get(b"o"), fields.get(b"l")
        if owner and log_id:
            _lower(bounds.below, owner.decode(), id_tuple(log_id))


def archivable_bounds(client: redis.Redis, p: int, deployment_next: int | None) -> Bounds:
    feed, bounds = keys.feed(p), Bounds()
    groups: Any = _groups(client, feed)
    if not groups:
        bounds.skipped = "the feed has no consumer group (run memstream init)"
        return bounds
    names = [g["name"] for g in groups]
    pipe = client.pipeline(transaction=True)
    pipe.hgetall(keys.heads(p))
    pipe.xinfo_groups(feed)
    for name in names:
        pipe.xpending_range(feed, name, min="-", max="+", count=UNACKED_LIMIT + 1)
    oldest = min((id_tuple(g["last-delivered-id"]) for g in groups), default=(0, 0))
    pipe.xrange(feed, min=f"({oldest[0]}-{oldest[1]}", max="+", count=UNACKED_LIMIT + 1)
    if deployment_next is not None:
        pipe.hgetall(keys.cutoff(p, deployment_next))
    pipe.xrange(keys.dlq(p), count=UNACKED_LIMIT + 1)
    replies = pipe.execute()
    heads, now_groups, rest = replies[0], replies[1], replies[2:]
    if sorted(g["name"] for g in now_groups) != sorted(names) or any(
        id_tuple(g["last-delivered-id"]) < oldest for g in now_groups
    ):
        bounds.skipped = "consumer groups changed while reading (a replay began or ended)"
        return bounds
    pending, undelivered = rest[: len(names)], rest[len(names)]
    if any(len(x) > UNACKED_LIMIT for x in [*pending, undelivered]):
        bounds.skipped = f"more than {UNACKED_LIMIT} unacknowledged entries: workers are behind"
        return bounds
    _pointers(bounds, undelivered)
    _pending(client, feed, bounds, [row["message_id"] for rows in pending for row in rows])
    for raw_owner, raw_head in heads.items():
        bounds.upto[_text(raw_owner)] = id_tuple(raw_head)
    if deployment_next is not None:
        cut = {_text(k): id_tuple(v) for k, v in rest[len(names) + 1].items()}
        # An owner missing from the cutoff appeared after the replay began: all of its
        # entries are past the cutoff, and the new group applies them from the feed.
        bounds.upto = {o: min(h, cut[o]) for o, h in bounds.upto.items() if o in cut}
    _letters(bounds, rest[-1])
    return bounds


def _letters(bounds: Bounds, letters: Any) -> None:
    """Keep dead letters' entries hot: ``memstream dlq retry`` reads them by id."""
    if len(letters) > UNACKED_LIMIT:
        bounds.skipped = f"more than {UNACKED_LIMIT} dead letters"
        return
    for _id, fields in letters:
        owner, log_id = fields.get(b"owner"), fields.get(b"log_id")
        if owner and log_id:
            _lower(bounds.below, owner.decode("utf-8", "replace"), id_tuple(log_id))


def _pending(client: redis.Redis, feed: str, bounds: Bounds, ids: list[Any]) -> None:
    if not ids:
        return
    fetch = client.pipeline(transaction=False)
    for i in ids:
        fetch.xrange(feed, min=i, max=i, count=1)
    # A pointer acked and trimmed since the snapshot is harmless to miss: it is acked.
    _pointers(bounds, (rows[0] if rows else None for rows in fetch.execute()))


def _groups(client: redis.Redis, feed: str) -> Any:
    try:
        return client.xinfo_groups(feed)
    except redis.ResponseError:
        return []
