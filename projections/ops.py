"""The write ops a projection emits, and their encoding for one ``ms_apply`` call.

Projections never talk to Redis: they describe writes as ops that converge whatever the
delivery order (see workers/lua/apply.lua for their semantics). A batch names each key
once in KEYS, so every key the call touches is declared, and ops refer to keys by index.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from memstream.producers import keys as keyspace

Op = tuple[Any, ...]

VERSION_LEN = 24
"""Length of :func:`sortable` ids; apply.lua compares this many leading bytes."""

KEY_SLOTS: dict[str, tuple[int, ...]] = {
    "LWW": (1,),
    "ZLOG": (1, 4),
    "CLEAR": (1, 2),
    "HMAX": (1,),
    "HINCR": (1,),
    "ZMAX": (1,),
    "ZMIN": (1,),
    "EXPAT": (1,),
    "EXPATF": (1, 3),
    "SESSEXP": (1, 2, 4, 8),
    "SESSEXPD": (1, 2, 4),
    "TLADD": (1,),
    "VFLOOR": (1, 2, 3, 4, 6, 8),
    "VEXT": (1, 2, 3),
    "VTTL": (1, 2, 3, 4),
    "VCHG": (1, 2),
    "DEL": (1,),
    "XADD": (1,),
    "SPUB": (1,),
    "WOBS": (1, 2, 3, 4, *range(5, 21)),
    "LWWZ": (1, 5),
    "PRUNE": (1, 3, 4),
    "PTR": (1, 2),
}
"""Positions of key arguments in each op (0 is the op name)."""

SHARED_SLOTS: dict[str, tuple[int, ...]] = {"WOBS": (2, 3)}
"""Key positions of partition-wide keys (DLQ, stats) an op writes only on a rejection.
Left out of :func:`op_keys`, so an owner rebuild keeps the op for its owner keys."""

CHANNEL_OPS = frozenset({"SPUB"})
"""Ops whose "key" is a pub/sub channel: declared like a key (Cluster routes on it), but
nothing is stored under it."""

RERUNNABLE_OPS = frozenset(
    {"LWW", "ZLOG", "CLEAR", "HMAX", "ZMAX", "ZMIN", "EXPAT", "EXPATF", "SESSEXP", "SESSEXPD",
     "VFLOOR", "TLADD"}
)  # fmt: skip
"""Ops that may run again later, after other writes, and change nothing: idempotent and
order-free. An owner rebuild re-runs only these on keys it cannot delete first (keys
shared with other owners). Not HINCR or XADD (they would count twice), nor DEL (run
later, it would delete newer writes)."""


def op_keys(op: Op) -> list[str]:
    """The stored keys an op touches (channels left out)."""
    if op[0] in CHANNEL_OPS:
        return []
    shared = SHARED_SLOTS.get(op[0], ())
    return [op[pos] for pos in KEY_SLOTS[op[0]] if op[pos] is not None and pos not in shared]


@functools.lru_cache(maxsize=4096)
def sortable(log_id: str) -> str:
    """A log id as fixed-width text, so byte order equals log order (LWW versions, ZLOG).

    Cached because several projections ask for the same event's id in one batch."""
    ms, _, seq = log_id.partition("-")
    return f"{int(ms):013d}-{int(seq or 0):010d}"


def id_tuple(raw: bytes | str) -> tuple[int, int]:
    """A stream id as (ms, seq), for comparing ids as Redis orders them."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def log_id_of(version: str) -> str:
    ms, _, seq = version.partition("-")
    return f"{int(ms)}-{int(seq)}"


@dataclass(slots=True)
class Writes:
    """The ops of one event, in the order they must run."""

    ops: list[Op] = field(default_factory=list)

    def lww(self, key: str, field_name: str, version: str, value: bytes) -> None:
        """Set ``field`` to ``value`` unless a newer version is already stored."""
        self.ops.append(("LWW", key, field_name, version, value))

    def zlog(
        self,
        key: str,
        version: str,
        value: bytes,
        *,
        cap: int = 0,
        watermark: tuple[str, str] | None = None,
    ) -> None:
        """Add ``value`` in log order; keep the newest ``cap``; skip if cleared."""
        wkey, wfield = watermark if watermark else (None, "")
        self.ops.append(("ZLOG", key, version.encode() + value, cap, wkey, wfield))

    def clear(self, key: str, watermark: tuple[str, str], version: str) -> None:
        """Drop everything older than ``version`` and remember the watermark."""
        self.ops.append(("CLEAR", key, watermark[0], watermark[1], version))

    def hmax(self, key: str, field_name: str, version: str) -> None:
        self.ops.append(("HMAX", key, field_name, version))

    def hincr(self, key: str, field_name: str, amount: int) -> None:
        """Commutative integer counter (floats are kept as scaled ints to stay exact)."""
        self.ops.append(("HINCR", key, field_name, int(amount)))

    def zmax(self, key: str, member: str, score: float) -> None:
        self.ops.append(("ZMAX", key, member, score))

    def zmin(self, key: str, member: str, score: float) -> None:
        self.ops.append(("ZMIN", key, member, score))

    def expire_at(self, key: str, at_ms: int) -> None:
        """Expire ``key`` at ``at_ms`` unless it already lives longer."""
        self.ops.append(("EXPAT", key, int(at_ms)))

    def expire_at_floor(self, key: str, at_ms: int, floor: tuple[str, str]) -> None:
        """:meth:`expire_at` at no earlier than the time (13-digit ms) stored in the floor
        hash field: a TTL extension (``ttl.extended``) raises the floor, so a write that
        arrives after the extension still gets the extended life (convergence)."""
        self.ops.append(("EXPATF", key, int(at_ms), floor[0], floor[1]))

    def extend_to(self, keys: Sequence[str], at_ms: int, floor: tuple[str, str]) -> None:
        """Raise ``floor`` to ``at_ms`` and extend ``keys`` that exist to it."""
        self.hmax(floor[0], floor[1], f"{int(at_ms):013d}")
        self.expire_at(floor[0], at_ms)
        for key in keys:
            self.expire_at(key, at_ms)

    def session_expiry(
        self, key: str, chosen: tuple[str, str], floor: tuple[str, str], default_ms: int,
        *, cap: int, life: str,
    ) -> None:  # fmt: skip
        """Set ``key`` (a session's log, capped at ``cap`` members, 0 for none) to expire at
        its newest member's time plus the TTL in the ``chosen`` hash field (else
        ``default_ms``; 0 is none), no earlier than the ``floor`` field: recomputed
        exactly, so a shorter TTL shortens it. Also writes the session's life record to
        ``life`` with the same expiry (memstream.projections.session_life)."""
        self.ops.append(
            ("SESSEXP", key, chosen[0], chosen[1], floor[0], floor[1], default_ms, cap, life)
        )

    def ttl_event(self, key: str, field_name: str, entry: str) -> None:
        """Add ``entry`` (38 characters: a sortable version, ``c``/``d``/``e`` and 13
        digits) once to the sorted entries of the hash ``field``: a session's TTL events,
        which its life boundary replays (memstream.projections.session_life)."""
        self.ops.append(("TLADD", key, field_name, entry))

    def session_data_expiry(
        self, key: str, chosen: tuple[str, str], floor: tuple[str, str], default_ms: int
    ) -> None:
        """:meth:`session_expiry` for a hash of LWW values (``key``, a session's data): its
        newest write is the highest version among the values."""
        self.ops.append(("SESSEXPD", key, chosen[0], chosen[1], floor[0], floor[1], default_ms))

    def vector_floor(
        self, vkeys: tuple[str, str, str, str], ref: str, floor: tuple[str, str],
        choice: tuple[str, str],
    ) -> None:  # fmt: skip
        """Raise the vector ``ref`` just written in ``vkeys`` (hash, live set, meta, change
        stream) to expire no earlier than the ``floor`` field (13-digit ms), nor than its
        version's ms + the ``choice`` field (the longest TTL its session chose, 13-digit
        ms), keys included."""
        self.ops.append(("VFLOOR", *vkeys, ref, floor[0], floor[1], choice[0], choice[1]))

    def vector_extend(
        self, vkeys: tuple[str, str, str], prefix: str, at_ms: int, count_field: str
    ) -> None:
        """Raise every live vector in ``vkeys`` whose id starts with ``prefix`` to expire
        no earlier than ``at_ms``, and count it in the meta hash's ``count_field``."""
        self.ops.append(("VEXT", *vkeys, prefix, int(at_ms), count_field))

    def vector_ttl(
        self, vkeys: tuple[str, str, str, str], prefix: str, ttl_ms: int, count_field: str
    ) -> None:
        """Raise every live vector in ``vkeys`` (hash, live set, meta, change stream) whose
        id starts with ``prefix`` to expire no earlier than its version's ms + ``ttl_ms``,
        and count it in the meta hash's ``count_field``."""
        self.ops.append(("VTTL", *vkeys, prefix, int(ttl_ms), count_field))

    def vector_change(
        self, ckey: str, hkey: str, cap: int, change: tuple[str, str], version: str
    ) -> None:
        """Record in the stream ``ckey`` that the event at ``version`` changed, in the
        vector hash ``hkey``, ``change``: ``("r", ref)`` that ref, ``("x", prefix)`` every
        vector whose ref starts with it; about ``min(cap, HLEN hkey)`` entries are kept
        (docs/search.md, "Why it is fast")."""
        self.ops.append(("VCHG", ckey, hkey, int(cap), *change, version))

    def delete(self, key: str) -> None:
        self.ops.append(("DEL", key))

    def xadd(self, key: str, fields: Iterable[tuple[str, str | bytes]]) -> None:
        flat: list[str | bytes] = []
        for name, value in fields:
            flat += [name, value]
        self.ops.append(("XADD", key, *flat))

    def publish(self, channel: str, message: bytes) -> None:
        self.ops.append(("SPUB", channel, message))

    def lwwz(
        self, key: str, field_name: str, version: str, value: bytes,
        *, zkey: str, member: str, score: str | None,
    ) -> None:  # fmt: skip
        """LWW ``field`` and, when this version wins (or ties), mirror it in ``zkey``:
        ZADD ``member`` at ``score`` (a decimal string, exact), or ZREM when None."""
        self.ops.append(("LWWZ", key, field_name, version, value, zkey, member, score or ""))

    def prune(
        self, zkey: str, scale: int = 1, *, hkey: str | None = None, also: str | None = None
    ) -> None:
        """Drop members whose score (expiry ms times ``scale``) is past the server clock,
        a bounded number per call; the same members leave ``hkey`` and ``also``."""
        self.ops.append(("PRUNE", zkey, int(scale), hkey, also))


class KeyTable:
    """KEYS of one call: each key once, ops refer to 1-based indices."""

    def __init__(self, first: Sequence[str] = ()) -> None:
        self.keys: list[str] = []
        self._index: dict[str, int] = {}
        for key in first:
            self.index(key)

    def index(self, key: str | None) -> int:
        if key is None:
            return 0
        found = self._index.get(key)
        if found is None:
            self.keys.append(key)
            found = self._index[key] = len(self.keys)
        return found

    def encode(self, ops: Sequence[Op]) -> list[list[Any]]:
        # The worker's hot path (every op of every event): lookups are bound to locals
        # and a key already in the table costs one dict hit.
        known, index, slots_of = self._index.get, self.index, KEY_SLOTS
        out = []
        for op in ops:
            row = list(op)
            for pos in slots_of[op[0]]:
                key = row[pos]
                row[pos] = known(key) or index(key)
            out.append(row)
        return out


_FEED = re.compile(r"ms:\{(\d+)\}:feed")


def apply_command(
    feed_key: str,
    group: str,
    entries: Sequence[tuple[str, Sequence[Op]]],
    *,
    fences: str | None = None,
    owners: Mapping[str, tuple[str, str]] | None = None,
    dlq: str | None = None,
    stats: str | None = None,
) -> tuple[Any, ...]:
    """``FCALL ms_apply``: XACK-gated writes for a batch of one partition.

    With ``fences`` (the version's fences hash) and ``owners`` (feed id -> owner and
    sortable log id of each planned event), an entry the owner's rebuild already folded
    is acked without writing (``replay --owner``). ``dlq`` and ``stats`` (derived from a
    partition's feed key and group when not given) receive an entry that ``ms_apply``
    refuses: its ops failed validation or failed on the server.
    """
    table = KeyTable([feed_key, fences] if fences else [feed_key])
    found = _FEED.fullmatch(feed_key)
    version = keyspace.group_version(group)
    if found and dlq is None:
        dlq = keyspace.dlq(int(found[1]))
    if found and stats is None and version is not None:
        stats = keyspace.Projection(int(found[1]), version).partition_key("stats")
    body: list[list[Any]] = []
    for feed_id, ops in entries:
        row: list[Any] = [feed_id, table.encode(ops)]
        fence = owners.get(feed_id) if owners else None
        if fence is not None:
            row += fence
        body.append(row)
    packed = msgpack.packb(body, use_bin_type=False)
    extra = ("1" if fences else "0", table.index(dlq), table.index(stats))
    return ("FCALL", "ms_apply", len(table.keys), *table.keys, group, packed, *extra)


def write_command(batches: Sequence[Sequence[Op]]) -> tuple[Any, ...]:
    """``FCALL ms_write``: ungated writes, used by replay for events up to the cutoff."""
    table = KeyTable()
    body = [table.encode(ops) for ops in batches]
    packed = msgpack.packb(body, use_bin_type=False)
    return ("FCALL", "ms_write", len(table.keys), *table.keys, packed)


@dataclass(frozen=True, slots=True)
class RebuildKeys:
    """The fixed keys of ``ms_rebuild_owner``: the partition's heads, the version's
    fences and the feed (whose group proves the version is still alive)."""

    heads: str
    fences: str
    feed: str


def rebuild_command(
    fixed: RebuildKeys,
    group: str,
    owner: str,
    *,
    head: str,
    delete: Iterable[str],
    batches: Sequence[Sequence[Op]],
) -> tuple[Any, ...]:
    """``FCALL ms_rebuild_owner``: delete ``delete``, fold ``batches``, fence at ``head``.

    ``head`` is the owner's last log id the fold includes ('' when it has no log).
    """
    table = KeyTable([fixed.heads, fixed.fences, fixed.feed])
    dels = [table.index(key) for key in sorted(set(delete))]
    body = [table.encode(ops) for ops in batches]
    fence = sortable(head) if head else ""
    packed_dels = msgpack.packb(dels, use_bin_type=False)
    packed = msgpack.packb(body, use_bin_type=False)
    return (
        "FCALL", "ms_rebuild_owner", len(table.keys), *table.keys,
        owner, head, fence, group, packed_dels, packed,
    )  # fmt: skip
