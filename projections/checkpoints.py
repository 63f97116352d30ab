"""LangGraph checkpoints and pending writes, by thread (``MemstreamCheckpointSaver``).

Keys of one thread (``keys.checkpoint_thread``: the thread id enters a key only as a
digest), per owner:
- ``cp_d``: every payload of the thread (checkpoints, channel values, writes), a
  log-ordered sorted set (``ZLOG``): a member is ``<version><ref>\\0<msgpack>`` where
  ``ref`` names the payload within its event (``c``, ``b<i>``, ``w<i>``). A thread delete
  is a ``CLEAR`` under the thread's watermark (``cp_wm``), so every payload older than
  the delete goes, and one that arrives late is never written.
- ``cp_h``: lookups, hash field -> ``<version><ref>`` (LWW): ``c␟ns␟id`` a checkpoint,
  ``b␟ns␟channel␟version`` a channel value, ``w␟ns␟id␟task␟idx`` a write. A lookup
  whose version is at or below the thread's watermark is dead (its payload was cleared).
- ``cp_ix`` / ``cp_wx``: sorted sets of ``ns␟id`` and ``ns␟id␟task␟idx`` at score 0
  (``LWWZ`` mirrors of the lookups), so a namespace's checkpoints are one
  ``ZREVRANGEBYLEX`` range, newest id first (LangGraph's ids sort by time).
Per owner: ``cp_wm`` (thread digest -> delete watermark), ``cp_th`` / ``cp_tx`` (digest ->
thread id, live threads; a delete is a tombstone).

Convergence: payloads are ZLOG/CLEAR under one watermark, lookups and mirrors LWW/LWWZ
by log id, so any delivery order leaves the same keys. What a delete leaves: the dead
lookups and index members (names and ids, no values) until the owner is forgotten.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from memstream.producers import keys
from memstream.producers.entry import StoredEvent
from memstream.producers.events_checkpoint import (
    CheckpointPut,
    CheckpointsRemoved,
    CheckpointThreadDeleted,
    CheckpointWrites,
)

from .base import ApplyContext, Projection, Query
from .codec import pack, unpack
from .ops import VERSION_LEN, Writes, sortable

SEP = "\x1f"
TOMBSTONE = pack(None)


def _thread_keys(pk: keys.Projection, owner: str, thread_id: str) -> dict[str, str]:
    return {n: keys.checkpoint_thread(pk, n, owner, thread_id) for n in keys.CHECKPOINT_THREAD_KEYS}


def _owner_key(pk: keys.Projection, name: str, owner: str) -> str:
    return keys.checkpoint_owner(pk, name, owner)


def _member(ref: str, payload: Any) -> bytes:
    return ref.encode() + b"\0" + pack(payload)


class Checkpoints(Projection):
    name: ClassVar[str] = "checkpoints"
    handles: ClassVar[frozenset[str]] = frozenset(
        {CheckpointPut.TYPE, CheckpointWrites.TYPE, CheckpointThreadDeleted.TYPE,
         CheckpointsRemoved.TYPE}
    )  # fmt: skip
    key_names: ClassVar[frozenset[str]] = frozenset(
        keys.CHECKPOINT_THREAD_KEYS + keys.CHECKPOINT_OWNER_KEYS
    )

    def apply(self, event: StoredEvent, ctx: ApplyContext, writes: Writes) -> None:
        e, pk, owner = event.event, ctx.keys, event.owner
        if not isinstance(
            e, (CheckpointPut, CheckpointWrites, CheckpointThreadDeleted, CheckpointsRemoved)
        ):
            return
        version = sortable(event.log_id)
        k = _thread_keys(pk, owner, e.thread_id)
        mark = (_owner_key(pk, "cp_wm", owner), keys.thread_digest(e.thread_id))
        threads, live = _owner_key(pk, "cp_th", owner), _owner_key(pk, "cp_tx", owner)
        if isinstance(e, CheckpointThreadDeleted):
            writes.clear(k["cp_d"], mark, version)
            writes.lwwz(threads, mark[1], version, TOMBSTONE, zkey=live, member=mark[1],
                        score=None)  # fmt: skip
            return
        if isinstance(e, CheckpointsRemoved):
            for removed in e.checkpoints:
                name = removed.checkpoint_ns + SEP + removed.checkpoint_id
                writes.lwwz(k["cp_h"], "c" + SEP + name, version, TOMBSTONE, zkey=k["cp_ix"],
                            member=name, score=None)  # fmt: skip
                for task_idx in removed.writes:
                    wname = name + SEP + task_idx
                    writes.lwwz(k["cp_h"], "w" + SEP + wname, version, TOMBSTONE,
                                zkey=k["cp_wx"], member=wname, score=None)  # fmt: skip
            return
        ns = e.checkpoint_ns
        if isinstance(e, CheckpointWrites):
            for i, w in enumerate(e.writes):
                ref, name = f"w{i}", SEP.join((ns, e.checkpoint_id, e.task_id, str(w.idx)))
                payload = [e.task_id, w.channel, w.type, w.data, e.task_path, w.idx]
                writes.zlog(k["cp_d"], version, _member(ref, payload), watermark=mark)
                writes.lwwz(k["cp_h"], "w" + SEP + name, version, ref.encode(),
                            zkey=k["cp_wx"], member=name, score="0")  # fmt: skip
            return
        record = {
            "parent": e.parent_id, "ck": [e.checkpoint.type, e.checkpoint.data],
            "md": [e.metadata.type, e.metadata.data], "versions": e.versions,
        }  # fmt: skip
        writes.zlog(k["cp_d"], version, _member("c", record), watermark=mark)
        name = ns + SEP + e.checkpoint_id
        # The lookup carries the channel versions, so a read asks for the values' lookups
        # in the same round trip as the checkpoint itself.
        writes.lwwz(k["cp_h"], "c" + SEP + name, version, b"c\0" + pack(e.versions),
                    zkey=k["cp_ix"], member=name, score="0")  # fmt: skip
        for i, blob in enumerate(e.blobs):
            ref = f"b{i}"
            writes.zlog(k["cp_d"], version, _member(ref, [blob.type, blob.data]), watermark=mark)
            field_name = SEP.join(("b", ns, blob.channel, blob.version))
            writes.lww(k["cp_h"], field_name, version, ref.encode())
        writes.lwwz(threads, mark[1], version, pack(e.thread_id), zkey=live, member=mark[1],
                    score="0")  # fmt: skip


# --- reads ----------------------------------------------------------------------------


StoredWrite = tuple[str, str, tuple[str, bytes], str, int]


@dataclass(slots=True)
class Record:
    """One stored checkpoint, as the serializer wrote it (the adapter decodes it)."""

    ns: str
    checkpoint_id: str
    parent_id: str | None
    checkpoint: tuple[str, bytes]
    metadata: tuple[str, bytes]
    versions: dict[str, str]
    values: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    writes: list[StoredWrite] = field(default_factory=list)
    write_names: list[str] = field(default_factory=list)
    """Its pending writes' names (``task␟idx``), for removing them with it."""
    """(task id, channel, value, task path, index), in ``writes_sort_key`` order."""


def _alive(lookup: bytes | None, mark: bytes | None) -> bool:
    """A lookup newer than the thread's delete, and no tombstone (``checkpoint.removed``)."""
    return (
        lookup is not None
        and (mark is None or lookup[:VERSION_LEN] > mark)
        and lookup[VERSION_LEN:] != TOMBSTONE
    )


def _pointer(lookup: bytes) -> bytes:
    """A lookup's version and ref (what follows a ``\0``, if anything, is not)."""
    end = lookup.find(b"\0", VERSION_LEN)
    return lookup if end < 0 else lookup[:end]


def _payload_range(cp_d: str, lookup: bytes) -> tuple[Any, ...]:
    """The payload a lookup points at: its version and ref, then ``\\0``."""
    at = _pointer(lookup)
    return ("ZRANGEBYLEX", cp_d, b"[" + at + b"\0", b"(" + at + b"\x01")


def _one(members: list[bytes]) -> Any:
    if not members:
        return None
    raw = members[-1]
    return unpack(raw[raw.index(b"\0", VERSION_LEN) + 1 :])


def read_refs(
    pk: keys.Projection, owner: str, thread_id: str, *, ns: str | None, before: str | None,
    count: int,
) -> Query[list[tuple[str, str]]]:  # fmt: skip
    """Up to ``count`` (ns, checkpoint id) refs of the thread, newest id first, ids
    below ``before`` only; every namespace's when ``ns`` is None (then all refs are read:
    ``count`` applies after sorting). Dead refs are included: the caller checks them with
    :func:`read_checkpoints`."""
    k = _thread_keys(pk, owner, thread_id)
    if ns is None:
        scan: tuple[Any, ...] = ("ZRANGEBYLEX", k["cp_ix"], "-", "+")
    else:
        high = (ns + SEP + before) if before is not None else ns + chr(ord(SEP) + 1)
        scan = ("ZREVRANGEBYLEX", k["cp_ix"], "(" + high, "[" + ns + SEP, "LIMIT", 0, count)

    def parse(replies: list[Any]) -> list[tuple[str, str]]:
        refs = []
        for raw in replies[0]:
            if raw:
                ref_ns, _, cid = raw.decode().rpartition(SEP)
                if before is None or cid < before:
                    refs.append((ref_ns, cid))
        if ns is None:
            refs.sort(key=lambda r: r[1], reverse=True)
            refs = refs[:count]
        return refs

    return Query([scan], parse)


Keep = Callable[[Record], bool]


def read_checkpoints(
    pk: keys.Projection, owner: str, thread_id: str, refs: Sequence[tuple[str, str]], *,
    keep: Keep | None = None, limit: int | None = None,
) -> Query[list[Record]]:  # fmt: skip
    """The live checkpoints at ``refs`` (in their order; deleted or absent ones left out)
    that ``keep`` accepts, at most ``limit``, with their channel values and pending
    writes (in LangGraph's ``writes_sort_key`` order). Three round trips: lookups, then
    checkpoints with the lookups of their values and writes, then those payloads."""
    k = _thread_keys(pk, owner, thread_id)
    names = [ns + SEP + cid for ns, cid in refs]
    first: list[tuple[Any, ...]] = [
        ("HGET", _owner_key(pk, "cp_wm", owner), keys.thread_digest(thread_id)),
        ("HMGET", k["cp_h"], *["c" + SEP + n for n in names]),
    ]
    first += [("ZRANGEBYLEX", k["cp_wx"], "[" + n + SEP, "(" + n + chr(ord(SEP) + 1))
              for n in names]  # fmt: skip

    def parse(replies: list[Any]) -> Query[list[Record]] | list[Record]:
        mark, lookups, write_names = replies[0], replies[1], replies[2:]
        live = [i for i, raw in enumerate(lookups) if _alive(raw, mark)]
        if not live:
            return []
        versions = [_versions(lookups[i]) for i in live]
        w_fields = [[b"w" + SEP.encode() + m for m in write_names[i] if m] for i in live]
        b_fields = [[SEP.join(("b", refs[i][0], ch, ver)) for ch, ver in v.items()]
                    for i, v in zip(live, versions, strict=True)]  # fmt: skip
        second: list[tuple[Any, ...]] = [_payload_range(k["cp_d"], lookups[i]) for i in live]
        flat_w = [f for fs in w_fields for f in fs]
        flat_b = [f for fs in b_fields for f in fs]
        # Reader roles may run only read commands: an empty HMGET is left out, not faked.
        second += [("HMGET", k["cp_h"], *fs) for fs in (flat_w, flat_b) if fs]
        plan = _Loaded(refs, live, w_fields, b_fields, mark, keep, limit)
        return Query(second, lambda r: plan.payloads(k["cp_d"], r))

    return Query(first, parse)


def _write_name(lookup_field: bytes) -> str:
    """``w␟ns␟id␟task␟idx`` -> ``task␟idx``."""
    return SEP.join(lookup_field.decode().split(SEP)[3:])


def _versions(lookup: bytes) -> dict[str, str]:
    end = lookup.find(b"\0", VERSION_LEN)
    found = unpack(lookup[end + 1 :]) if end >= 0 else {}
    return dict(found) if isinstance(found, dict) else {}


@dataclass(slots=True)
class _Loaded:
    """The second and third stages of :func:`read_checkpoints`."""

    refs: Sequence[tuple[str, str]]
    live: list[int]
    w_fields: list[list[bytes]]
    b_fields: list[list[str]]
    mark: bytes | None
    keep: Keep | None
    limit: int | None
    records: list[Record] = field(default_factory=list)
    wanted: list[tuple[Record, str | None]] = field(default_factory=list)

    def payloads(self, cp_d: str, replies: list[Any]) -> Query[list[Record]] | list[Record]:
        extra = iter(replies[len(self.live) :])
        w_lookups = iter(next(extra) if any(self.w_fields) else [])
        b_lookups = iter(next(extra) if any(self.b_fields) else [])
        third: list[tuple[Any, ...]] = []
        for at, i in enumerate(self.live):
            ws = [w for w in (next(w_lookups) for _ in self.w_fields[at]) if _alive(w, self.mark)]
            bs = [(f, next(b_lookups)) for f in self.b_fields[at]]
            raw = _one(replies[at])
            if raw is None:
                continue  # cleared by a delete whose watermark this read did not see yet
            ns, cid = self.refs[i]
            record = Record(ns, cid, raw["parent"], tuple(raw["ck"]), tuple(raw["md"]),
                            dict(raw["versions"]))  # fmt: skip
            record.write_names = [_write_name(w) for w in self.w_fields[at]]
            if self.keep is not None and not self.keep(record):
                continue
            if self.limit is not None and len(self.records) >= self.limit:
                break
            self.records.append(record)
            for w in ws:
                third.append(_payload_range(cp_d, w))
                self.wanted.append((record, None))
            for f, b in bs:
                if _alive(b, self.mark):
                    third.append(_payload_range(cp_d, b))
                    self.wanted.append((record, f.split(SEP)[2]))
        if not third:
            return self.records
        return Query(third, self.fill)

    def fill(self, replies: list[Any]) -> list[Record]:
        found: dict[int, list[tuple[tuple[str, str, int], StoredWrite]]] = {}
        for (record, channel), members in zip(self.wanted, replies, strict=True):
            value = _one(members)
            if value is None:
                continue
            if channel is not None:
                if value[0] != "empty":
                    record.values[channel] = (value[0], value[1])
                continue
            task, ch, kind, data, path, idx = value
            found.setdefault(id(record), []).append(
                ((path, task, idx), (task, ch, (kind, data), path, idx))
            )
        for record in self.records:
            record.writes = [w for _, w in sorted(found.get(id(record), []), key=lambda t: t[0])]
        return self.records


def read_threads(pk: keys.Projection, owner: str) -> Query[list[str]]:
    """Every thread id of ``owner`` with checkpoints (deleted threads left out)."""
    names = _owner_key(pk, "cp_th", owner)

    def parse(replies: list[Any]) -> Query[list[str]] | list[str]:
        digests = [m for m in replies[0] if m]
        if not digests:
            return []
        return Query([("HMGET", names, *digests)], _thread_ids)

    return Query([("ZRANGEBYLEX", _owner_key(pk, "cp_tx", owner), "-", "+")], parse)


def _thread_ids(replies: list[Any]) -> list[str]:
    ids = [unpack(raw[VERSION_LEN:]) for raw in replies[0] if raw is not None]
    return sorted(i for i in ids if isinstance(i, str))
