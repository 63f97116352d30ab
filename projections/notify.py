"""Change notifications published by the ack-gated apply, and forget requests.

Every applied event that changed a projection adds one ``SPUB`` op: a compact msgpack
record ``{"o": owner, "t": type, "v": version, "l": log id}`` on the partition's sharded
channel (:func:`keys.changes`). The op runs inside ``ms_apply`` only when the entry's XACK
returned 1, so a redelivered or fenced entry publishes nothing, and a notification is
never seen before the writes it announces. Replay (full or ``--owner``) drops channel ops
(``Folder.ops``): a fold of history is not a live change; it publishes one ``reset``
record per owner instead (:func:`reset_record`), which makes readers drop their cache.

Pub/sub is at-most-once: a subscriber that loses its connection loses messages. Readers
that cache must therefore drop everything when their subscription breaks.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import msgpack

from memstream.producers import keys
from memstream.producers.entry import StoredEvent

from .base import ApplyContext
from .ops import CHANNEL_OPS, Writes

FORGOTTEN = "owner.forgotten"
RESET = "reset"
"""Type of the record sent when an owner's projections changed outside ``ms_apply``
(forget, ``replay --owner``): everything cached for the owner is stale."""


@dataclass(frozen=True, slots=True)
class Change:
    """One change record: ``owner``'s event ``type`` at ``log_id`` changed ``version``."""

    owner: str
    type: str
    log_id: str
    version: int


def encode(change: Change) -> bytes:
    return _record(change.owner, change.type, change.version, change.log_id)


def _record(owner: str, event_type: str, version: int, log_id: str) -> bytes:
    return _head(owner, event_type, version) + _LOG_FIELD + msgpack.packb(log_id)


_LOG_FIELD = msgpack.packb("l")


@functools.lru_cache(maxsize=4096)
def _head(owner: str, event_type: str, version: int) -> bytes:
    # Cached: the worker sends one record per applied event and only the log id
    # changes, so the map's header and its first three pairs are packed once per owner.
    packer = msgpack.Packer(use_bin_type=True)
    head = packer.pack_map_header(4)
    for name, value in (("o", owner), ("t", event_type), ("v", version)):
        head += packer.pack(name) + packer.pack(value)
    return head


def decode(raw: bytes) -> Change | None:
    """The record, or None for anything that is not one (never raise on the wire)."""
    try:
        body: Any = msgpack.unpackb(raw, raw=False)
        change = Change(str(body["o"]), str(body["t"]), str(body["l"]), int(body["v"]))
    except (ValueError, TypeError, KeyError, msgpack.UnpackException):
        return None
    return change


def change_record(event: StoredEvent, ctx: ApplyContext, writes: Writes) -> None:
    """Append the event's change notification to ``writes`` when it changed anything.

    ``owner.forgotten`` is folded by no projection; here it also files a forget request
    (a sorted set per partition, owner -> event time) that ``memstream forget
    --requested`` or the worker's post-apply hook turns into the deletion, which needs a
    keyspace scan that cannot run inside ``ms_apply``. ZMAX keeps it convergent.
    """
    if event.type == FORGOTTEN:
        writes.zmax(keys.forget_requests(ctx.keys.p), event.owner, event.ts_ms)
    for op in writes.ops:
        if op[0] not in CHANNEL_OPS:
            break
    else:
        return  # expired or no-op: nobody's view changed
    record = _record(event.owner, event.type, ctx.keys.version, event.log_id)
    writes.publish(keys.changes(ctx.keys.p), record)


def reset_record(owner: str, version: int) -> bytes:
    """The record that tells readers to drop everything cached for ``owner``."""
    return encode(Change(owner, RESET, "0-0", version))
