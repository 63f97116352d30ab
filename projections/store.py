"""The document store behind LangGraph's ``BaseStore``: items by namespace and key.

Keys (all per owner, so forget's owner scan finds them):
- ``st:<owner>``: hash, item ref -> the winning put's document (LWW by log id; a delete
  is a newer tombstone), mirrored through ``LWWZ`` into
- ``st_ix:<owner>``: sorted set of live refs, all at score 0, so a namespace prefix is a
  contiguous ``ZRANGEBYLEX`` range (a ref is each label + ``\\x1f``, ``\\x1e``, the key);
- ``st_c:<owner>:<hash of ref>``: the item's recent put versions (``ZLOG``, capped at
  :data:`CREATED_CAP`), cleared by a delete (watermark in ``st_wm:<owner>``): its oldest
  member is the item's creation time;
- ``st_rf:<owner>``: ref -> ``<version><expiry ms>``, raised (``HMAX``) by TTL refreshes
  of that version: a refresh of an older version never extends a newer put.

Convergence: every write is LWW, LWWZ, ZLOG/CLEAR under a watermark or HMAX, so any
delivery order gives the same state. Expired items stay stored until overwritten,
deleted or forgotten, and every read leaves them out (their expiry is in the document).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from memstream.producers import keys
from memstream.producers.entry import StoredEvent
from memstream.producers.events_store import StoreDeleted, StorePut, StoreRefreshed

from .base import ApplyContext, Projection, Query
from .codec import pack, split_versioned
from .ops import VERSION_LEN, Writes, log_id_of, sortable
from .tokenize import term_counts

CREATED_CAP = 64
"""Put versions kept per item for its creation time: exact for items written fewer times
since their creation; after that, the oldest of the newest 64 puts."""
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


def watermark(pk: keys.Projection, owner: str, ref: str) -> tuple[str, str]:
    return pk.key("st_wm", owner), _h(ref)


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
    handles: ClassVar[frozenset[str]] = frozenset({"store.put", "store.deleted", "store.refreshed"})

    def apply(self, event: StoredEvent, ctx: ApplyContext, writes: Writes) -> None:
        e, pk, owner = event.event, ctx.keys, event.owner
        version = sortable(event.log_id)
        if isinstance(e, StoreRefreshed):
            ref = ref_of(e.namespace, e.key)
            until = event.ts_ms + round(e.ttl_s * 1000)
            writes.hmax(refresh_key(pk, owner), ref, f"{e.of}{until:013d}")
            return
        if not isinstance(e, (StorePut, StoreDeleted)):
            return
        ref = ref_of(e.namespace, e.key)
        ck, mark = created_key(pk, owner, ref), watermark(pk, owner, ref)
        if isinstance(e, StoreDeleted):
            writes.lwwz(docs_key(pk, owner), ref, version, TOMBSTONE,
                        zkey=index_key(pk, owner), member=ref, score=None)  # fmt: skip
            writes.clear(ck, mark, version)
            return
        doc: dict[str, Any] = {"value": e.value, "ttl_s": e.ttl_s}
        if e.ttl_s is not None:
            doc["exp"] = event.ts_ms + round(e.ttl_s * 1000)
        if e.index is not False:
            doc["terms"] = index_terms(e.value, e.index)
        writes.lwwz(docs_key(pk, owner), ref, version, pack(doc),
                    zkey=index_key(pk, owner), member=ref, score="0")  # fmt: skip
        writes.zlog(ck, version, b"", cap=CREATED_CAP, watermark=mark)


def _ms(version: str) -> int:
    return int(version.partition("-")[0])


def item_of(ref: str, raw: bytes | None, refresh: bytes | None, created: list[bytes]) -> Any:
    """One stored item as a dict (namespace, key, value, times in ms, terms), or None
    when there is none (never put, deleted)."""
    if raw is None:
        return None
    log_id, doc = split_versioned(raw)
    if doc is None:
        return None
    version = raw[:VERSION_LEN].decode()
    exp = doc.get("exp")
    if refresh is not None and refresh[:VERSION_LEN].decode() == version:
        exp = max(exp or 0, int(refresh[VERSION_LEN:]))
    first = log_id_of(created[0][:VERSION_LEN].decode()) if created else log_id
    namespace, key = split_ref(ref)
    return {
        "namespace": namespace, "key": key, "value": doc["value"],
        "created_at": _ms(first), "updated_at": _ms(log_id), "expires_at": exp,
        "ttl_s": doc.get("ttl_s"), "version": version, "terms": doc.get("terms"),
    }  # fmt: skip


def read_items(pk: keys.Projection, owner: str, refs: Sequence[str]) -> Query[list[Any]]:
    """The items at ``refs`` (None where there is none), expired ones included: the
    caller compares ``expires_at`` with its clock."""
    if not refs:
        return Query([], lambda _: [])
    commands: list[tuple[Any, ...]] = [
        ("HMGET", docs_key(pk, owner), *refs),
        ("HMGET", refresh_key(pk, owner), *refs),
    ]
    commands += [("ZRANGE", created_key(pk, owner, ref), 0, 0) for ref in refs]

    def parse(replies: list[Any]) -> list[Any]:
        docs, refreshes, created = replies[0], replies[1], replies[2:]
        return [item_of(*row) for row in zip(refs, docs, refreshes, created, strict=True)]

    return Query(commands, parse)


def read_refs(
    pk: keys.Projection, owner: str, prefix: Sequence[str], limit: int
) -> Query[list[str]]:
    """Up to ``limit`` live refs under a namespace prefix, in ref order."""
    low, high = prefix_range(prefix)

    def parse(replies: list[Any]) -> list[str]:
        return [raw.decode() for raw in replies[0] if raw]

    return Query([("ZRANGEBYLEX", index_key(pk, owner), low, high, "LIMIT", 0, limit)], parse)
