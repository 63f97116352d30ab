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

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from memstream.producers import keys
from memstream.producers.entry import StoredEvent
from memstream.producers.events_checkpoint import (
    CheckpointPut,
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
        {CheckpointPut.TYPE, CheckpointWrites.TYPE, CheckpointThreadDeleted.TYPE}
    )
    key_names: ClassVar[frozenset[str]] = frozenset(
        keys.CHECKPOINT_THREAD_KEYS + keys.CHECKPOINT_OWNER_KEYS
    )

    def apply(self, event: StoredEvent, ctx: ApplyContext, writes: Writes) -> None:
        e, pk, owner = event.event, ctx.keys, event.owner
        if not isinstance(e, (CheckpointPut, CheckpointWrites, CheckpointThreadDeleted)):
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
        writes.lwwz(k["cp_h"], "c" + SEP + name, version, b"c", zkey=k["cp_ix"], member=name,
                    score="0")  # fmt: skip
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
    write_refs: list[bytes] = field(default_factory=list)
    values: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    writes: list[StoredWrite] = field(default_factory=list)
    """(task id, channel, value, task path, index), in ``writes_sort_key`` order."""


def _alive(lookup: bytes | None, mark: bytes | None) -> bool:
    return lookup is not None and (mark is None or lookup[:VERSION_LEN] > mark)


def _payload_range(cp_d: str, lookup: bytes) -> tuple[Any, ...]:
    """The payload a lookup points at: its version and ref, then ``\\0``."""
    return ("ZRANGEBYLEX", cp_d, b"[" + lookup + b"\0", b"(" + lookup + b"\x01")


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
    :func:`read_records`."""
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


def read_records(
    pk: keys.Projection, owner: str, thread_id: str, refs: Sequence[tuple[str, str]]
) -> Query[tuple[bytes | None, list[Record | None]]]:
    """The thread's delete watermark, and the live checkpoints at ``refs`` (None where
    there is none) with the refs of their pending writes; two round trips."""
    k = _thread_keys(pk, owner, thread_id)
    names = [ns + SEP + cid for ns, cid in refs]
    first: list[tuple[Any, ...]] = [
        ("HGET", _owner_key(pk, "cp_wm", owner), keys.thread_digest(thread_id)),
        ("HMGET", k["cp_h"], *["c" + SEP + n for n in names]),
    ]
    first += [("ZRANGEBYLEX", k["cp_wx"], "[" + n + SEP, "(" + n + chr(ord(SEP) + 1))
              for n in names]  # fmt: skip

    def parse(replies: list[Any]) -> Query[tuple[bytes | None, list[Record | None]]]:
        mark, lookups, write_names = replies[0], replies[1], replies[2:]
        live = [i for i, raw in enumerate(lookups) if _alive(raw, mark)]
        second: list[tuple[Any, ...]] = [_payload_range(k["cp_d"], lookups[i]) for i in live]
        wanted = [[b"w" + SEP.encode() + m for m in write_names[i]] for i in live]
        flat = [f for fields in wanted for f in fields]
        if flat:
            second.append(("HMGET", k["cp_h"], *flat))
        return Query(second, lambda r: (mark, _records(refs, live, wanted, r, mark)))

    return Query(first, parse)


def _records(
    refs: Sequence[tuple[str, str]], live: list[int], wanted: list[list[bytes]],
    replies: list[Any], mark: bytes | None,
) -> list[Record | None]:  # fmt: skip
    out: list[Record | None] = [None] * len(refs)
    write_lookups = iter(replies[len(live)] if len(replies) > len(live) else [])
    for n, i in enumerate(live):
        raw = _one(replies[n])
        refs_of = [w for w in (next(write_lookups) for _ in wanted[n]) if _alive(w, mark)]
        if raw is None:
            continue  # cleared by a delete whose watermark this read did not see yet
        ns, cid = refs[i]
        out[i] = Record(ns, cid, raw["parent"], tuple(raw["ck"]), tuple(raw["md"]),
                        dict(raw["versions"]), refs_of)  # fmt: skip
    return out


def read_values(
    pk: keys.Projection, owner: str, thread_id: str, records: Sequence[Record],
    mark: bytes | None,
) -> Query[list[Record]]:  # fmt: skip
    """``records`` with their channel values and pending writes filled in (writes in
    LangGraph's ``writes_sort_key`` order); two round trips."""
    k = _thread_keys(pk, owner, thread_id)
    wanted = [
        (r, ch, SEP.join(("b", r.ns, ch, ver))) for r in records for ch, ver in r.versions.items()
    ]
    writes = [(r, ref) for r in records for ref in r.write_refs]
    first: list[tuple[Any, ...]] = [_payload_range(k["cp_d"], ref) for _, ref in writes]
    if wanted:
        first.append(("HMGET", k["cp_h"], *[f for _, _, f in wanted]))
    if not first:
        return Query([], lambda _: list(records))

    def parse(replies: list[Any]) -> Query[list[Record]]:
        found: dict[int, list[tuple[tuple[str, str, int], StoredWrite]]] = {}
        for (record, _), members in zip(writes, replies, strict=False):
            w = _one(members)
            if w is not None:
                task, channel, kind, data, path, idx = w
                stored = (task, channel, (kind, data), path, idx)
                found.setdefault(id(record), []).append(((path, task, idx), stored))
        for record in records:
            record.writes = [w for _, w in sorted(found.get(id(record), []), key=lambda t: t[0])]
        lookups = replies[len(writes)] if wanted else []
        blobs = [(r, ch, raw) for (r, ch, _), raw in zip(wanted, lookups, strict=True)
                 if _alive(raw, mark)]  # fmt: skip
        return Query([_payload_range(k["cp_d"], raw) for _, _, raw in blobs],
                     lambda r: _values(records, blobs, r))  # fmt: skip

    return Query(first, parse)


def _values(
    records: Sequence[Record], blobs: list[tuple[Record, str, bytes]], replies: list[Any]
) -> list[Record]:
    for (record, channel, _), members in zip(blobs, replies, strict=True):
        value = _one(members)
        if value is not None and value[0] != "empty":
            record.values[channel] = (value[0], value[1])
    return list(records)


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
