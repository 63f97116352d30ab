"""The document store behind LangGraph's ``BaseStore``: items by namespace and key.

Keys (all per owner, so forget's owner scan finds them):
- ``st:<owner>``: hash, item ref -> the winning put's document (LWW by log id; a delete
  or an expiry is a newer tombstone), mirrored through ``LWWZ`` into
- ``st_ix:<owner>``: sorted set of live refs, all at score 0, so a namespace prefix is a
  contiguous ``ZRANGEBYLEX`` range (a ref is each label + ``\\x1f``, ``\\x1e``, the key);
- ``st_rf:<owner>``: ref -> ``<version><expiry ms>``, raised by ``HMAX``: every put writes
  its own version and expiry (:data:`NEVER` without a TTL), a delete or an expiry its
  version at :data:`DEAD`, a TTL refresh the version it read and its new expiry. The
  newest version wins, and within a version the latest expiry: a refresh of an older
  version never extends a newer put. Liveness needs this small hash only (listing,
  sweeping), not the documents;
- ``st_f:<owner>``: ref -> the item's first put ever (``LWW`` on :func:`complement`
  versions: the newest complement is the oldest put, a min-merge);
- ``st_c:<owner>:<hash of ref>``: the item's newest put versions (``ZLOG``, capped at
  :data:`CREATED_CAP`) since its last delete or expiry (watermark in ``st_wm:<owner>``).

``created_at`` is the first put after the item's last delete or expiry: ``st_f`` when
that first put is newer than the watermark (the item was never deleted, however many
puts it had), else the oldest of ``st_c`` (exact while the item has had at most
:data:`CREATED_CAP` puts since it was deleted and put again).

Versions are log ids with the sequence doubled (:func:`store_version`). An expiry
(``store.expired``, appended by the store's TTL sweeper for a version it found expired)
acts as a delete at the odd version right after it (:func:`after`): newer than that put,
older than any later event, so it never ties with one, and a later put still wins.

Convergence: every write is LWW, LWWZ, ZLOG/CLEAR under a watermark or HMAX, so any
delivery order gives the same state. Expired items that no sweep has removed yet stay
stored, and every read leaves them out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from memstream.producers import keys
from memstream.producers.entry import StoredEvent
from memstream.producers.events_store import (
    StoreDeleted,
    StoreExpired,
    StorePut,
    StoreRefreshed,
)

from .base import ApplyContext, Projection, Query
from .codec import pack, split_versioned
from .ops import VERSION_LEN, Writes, log_id_of
from .tokenize import term_counts

CREATED_CAP = 64
"""Put versions kept per item since its last delete: its creation time when it was deleted
and put again (see the module docstring)."""
NEVER, DEAD = "9" * 13, "0" * 13
"""Expiry suffixes in ``st_rf``: no TTL, and deleted or expired."""
MAX_MS, MAX_SEQ = 10**13 - 1, 10**10 - 1  # of sortable versions
TOMBSTONE = pack(None)
LABEL_END, KEY_START = "\x1f", "\x1e"


def ref_of(namespace: Sequence[str], key: str) -> str:
    return "".join(label + LABEL_END for label in namespace) + KEY_START + key


def split_ref(ref: str) -> tuple[tuple[str, ...], str]:
    labels, _, key = ref.partition(KEY_START)
    return tuple(labels.split(LABEL_END)[:-1]), key


def prefix_range(prefix: Sequence[str]) -> tuple[bytes, bytes]:
    """``ZRANGEBYLEX`` bounds of every ref under a namespace prefix."""
    if not prefix:
        return b"-", b"+"
    start = "".join(label + LABEL_END for label in prefix).encode()
    return b"[" + start, b"(" + start[:-1] + bytes([start[-1] + 1])


def _h(ref: str) -> str:
    return hashlib.sha1(ref.encode(), usedforsecurity=False).hexdigest()[:24]


def docs_key(pk: keys.Projection, owner: str) -> str:
    return pk.key("st", owner)


def index_key(pk: keys.Projection, owner: str) -> str:
    return pk.key("st_ix", owner)


def created_key(pk: keys.Projection, owner: str, ref: str) -> str:
    return pk.key("st_c", owner, _h(ref))


def refresh_key(pk: keys.Projection, owner: str) -> str:
    return pk.key("st_rf", owner)


def first_key(pk: keys.Projection, owner: str) -> str:
    return pk.key("st_f", owner)


def watermark(pk: keys.Projection, owner: str, ref: str) -> tuple[str, str]:
    return pk.key("st_wm", owner), _h(ref)


def complement(version: str) -> str:
    """A sortable version mirrored (its own inverse): byte order is reversed, so LWW,
    which keeps the newest, keeps the oldest put."""
    ms, _, seq = version.partition("-")
    return f"{MAX_MS - int(ms):013d}-{MAX_SEQ - int(seq):010d}"


def store_version(log_id: str) -> str:
    """The item version of an event: its log id with the sequence doubled, so every
    version has an odd neighbour just above it that no event has (see :func:`after`)."""
    ms, _, seq = log_id.partition("-")
    return f"{int(ms):013d}-{2 * int(seq or 0):010d}"


def after(version: str) -> str:
    """The odd version at or right after ``version``: where an expiry of it sits, newer
    than that put and older than any later event (whose versions are even), so it never
    ties with a put and any delivery order gives one state."""
    ms, _, seq = version.partition("-")
    return f"{ms}-{int(seq) | 1:010d}"


def _texts(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for inner in value.values():
            yield from _texts(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _texts(inner)


def _at(value: dict[str, Any], path: str) -> Any:
    if path == "$":
        return value
    found: Any = value
    for part in path.split("."):
        if not isinstance(found, dict) or part not in found:
            return None
        found = found[part]
    return found


def index_terms(value: dict[str, Any], fields: Sequence[str]) -> dict[str, int]:
    """The keyword terms of ``value``'s ``fields`` (the tokenizer search uses)."""
    texts = [text for path in fields for text in _texts(_at(value, path))]
    return dict(term_counts(*texts))


class Store(Projection):
    name: ClassVar[str] = "store"
    handles: ClassVar[frozenset[str]] = frozenset(
        {"store.put", "store.deleted", "store.refreshed", "store.expired"}
    )

    def apply(self, event: StoredEvent, ctx: ApplyContext, writes: Writes) -> None:
        e, pk, owner = event.event, ctx.keys, event.owner
        if not isinstance(e, (StorePut, StoreDeleted, StoreRefreshed, StoreExpired)):
            return
        ref = ref_of(e.namespace, e.key)
        if isinstance(e, StoreRefreshed):
            until = event.ts_ms + round(e.ttl_s * 1000)
            writes.hmax(refresh_key(pk, owner), ref, f"{e.of}{until:013d}")
            return
        version = after(e.of) if isinstance(e, StoreExpired) else store_version(event.log_id)
        ck, mark = created_key(pk, owner, ref), watermark(pk, owner, ref)
        if not isinstance(e, StorePut):  # a delete, or an expiry of the version it names
            writes.lwwz(docs_key(pk, owner), ref, version, TOMBSTONE,
                        zkey=index_key(pk, owner), member=ref, score=None)  # fmt: skip
            writes.hmax(refresh_key(pk, owner), ref, version + DEAD)
            writes.clear(ck, mark, version)
            return
        doc: dict[str, Any] = {"value": e.value, "ttl_s": e.ttl_s}
        exp = NEVER
        if e.ttl_s is not None:
            doc["exp"] = event.ts_ms + round(e.ttl_s * 1000)
            exp = f"{doc['exp']:013d}"
        if e.index is not False:
            doc["terms"] = index_terms(e.value, e.index)
        writes.lwwz(docs_key(pk, owner), ref, version, pack(doc),
                    zkey=index_key(pk, owner), member=ref, score="0")  # fmt: skip
        writes.hmax(refresh_key(pk, owner), ref, version + exp)
        writes.lww(first_key(pk, owner), ref, complement(version), b"")
        writes.zlog(ck, version, b"", cap=CREATED_CAP, watermark=mark)


def _ms(version: str) -> int:
    return int(version.partition("-")[0])


def expiry_of(raw: bytes | None) -> tuple[str, int | None] | None:
    """An ``st_rf`` entry as (version, expiry ms or None for none; 0 when deleted)."""
    if raw is None:
        return None
    text = raw.decode()
    version, until = text[:VERSION_LEN], text[VERSION_LEN:]
    return version, None if until == NEVER else int(until)


def created_of(winner: str, first: bytes | None, mark: bytes | None, oldest: list[bytes]) -> str:
    """The sortable version of the item's first put since its last delete or expiry."""
    floor = mark.decode() if mark else ""
    if first is not None:
        found = complement(first[:VERSION_LEN].decode())
        if found > floor:
            return found  # every put of the item is newer than its last delete
    return oldest[0][:VERSION_LEN].decode() if oldest else winner


def item_of(ref: str, raw: bytes | None, refresh: bytes | None, created: str | None) -> Any:
    """One stored item as a dict (namespace, key, value, times in ms, terms), or None
    when there is none (never put, deleted, swept)."""
    if raw is None:
        return None
    log_id, doc = split_versioned(raw)
    if doc is None:
        return None
    version = raw[:VERSION_LEN].decode()
    exp = doc.get("exp")
    found = expiry_of(refresh)
    if found is not None and found[0] == version and found[1] is not None:
        exp = max(exp or 0, found[1])
    namespace, key = split_ref(ref)
    return {
        "namespace": namespace, "key": key, "value": doc["value"],
        "created_at": _ms(log_id_of(created or version)), "updated_at": _ms(log_id),
        "expires_at": exp, "ttl_s": doc.get("ttl_s"), "version": version,
        "terms": doc.get("terms"),
    }  # fmt: skip


def read_items(pk: keys.Projection, owner: str, refs: Sequence[str]) -> Query[list[Any]]:
    """The items at ``refs`` (None where there is none), expired ones included: the
    caller compares ``expires_at`` with its clock."""
    if not refs:
        return Query([], lambda _: [])
    wm = pk.key("st_wm", owner)
    commands: list[tuple[Any, ...]] = [
        ("HMGET", docs_key(pk, owner), *refs),
        ("HMGET", refresh_key(pk, owner), *refs),
        ("HMGET", first_key(pk, owner), *refs),
        ("HMGET", wm, *[_h(ref) for ref in refs]),
    ]
    commands += [("ZRANGE", created_key(pk, owner, ref), 0, 0) for ref in refs]

    def parse(replies: list[Any]) -> list[Any]:
        docs, refreshes, firsts, marks, oldest = (
            replies[0],
            replies[1],
            replies[2],
            replies[3],
            replies[4:],
        )
        out = []
        for ref, raw, refresh, first, mark, old in zip(
            refs, docs, refreshes, firsts, marks, oldest, strict=True
        ):
            created = (
                None if raw is None else created_of(raw[:VERSION_LEN].decode(), first, mark, old)
            )
            out.append(item_of(ref, raw, refresh, created))
        return out

    return Query(commands, parse)


def read_refs(
    pk: keys.Projection, owner: str, prefix: Sequence[str], limit: int, after_ref: str = ""
) -> Query[list[str]]:
    """Up to ``limit`` listed refs under a namespace prefix, in ref order (after
    ``after_ref`` when given: pages). Listed is not live: see :func:`read_expiries`."""
    low, high = prefix_range(prefix)
    if after_ref:  # a ref of the range, so the page starts inside it
        low = b"(" + after_ref.encode()

    def parse(replies: list[Any]) -> list[str]:
        return [raw.decode() for raw in replies[0] if raw]

    return Query([("ZRANGEBYLEX", index_key(pk, owner), low, high, "LIMIT", 0, limit)], parse)


def read_expiries(
    pk: keys.Projection, owner: str, refs: Sequence[str]
) -> Query[list[tuple[str, int | None] | None]]:
    """Each ref's newest version and its expiry (see :func:`expiry_of`): what listing and
    the sweeper need, without reading the documents."""
    if not refs:
        return Query([], lambda _: [])
    return Query(
        [("HMGET", refresh_key(pk, owner), *refs)],
        lambda replies: [expiry_of(raw) for raw in replies[0]],
    )


def is_live(found: tuple[str, int | None] | None, now_ms: float) -> bool:
    """Live by its ``st_rf`` entry: no expiry or a later one (no entry: written before
    puts recorded their expiry there, so taken as live; reads of the item decide)."""
    return found is None or found[1] is None or found[1] > now_ms
