"""The keyword inverted index behind ``Reader.search``, one per owner.

Keys (all per owner, so forget's owner scan finds them):
- ``ix:<owner>:<token>``: posting set, member ``<kind>:<id>``, score
  ``expiry_ms * 64 + min(tf, 63)``: liveness, the version (its expiry) and the term
  frequency in one exact integer;
- ``ix_meta:<owner>``: ``<kind>:<id>`` -> the winning version's metadata (LWW by log id;
  a delete is a newer tombstone): kind, id, time, expiry, length, importance, success, tags;
- ``ix_live:<owner>``: live documents by expiry, mirroring ``ix_meta`` (``LWWZ``), so a
  live count is one ZCOUNT;
- ``ix_stat:<owner>``: counters ``docs`` and ``len`` over every version indexed, the
  length-normalisation pivot of BM25 (see docs/search.md).

Convergence: postings only grow (ZMAX), the metadata is last-writer-wins, counters
commute. A posting whose expiry differs from its item's metadata belongs to an older
version, and a posting of a deleted or expired item has no live metadata: the reader
drops both, so there are no ghost hits. Expired members are pruned on later writes.
"""

from __future__ import annotations

from typing import ClassVar

from memstream.producers import keys
from memstream.producers.entry import StoredEvent

from .base import ApplyContext, Projection
from .codec import pack
from .items import TOMBSTONE, expiry_ms, item_of, ttl_of
from .ops import Writes, sortable
from .tokenize import key_part, term_counts

TF_SCALE = 64
TF_MAX = TF_SCALE - 1
"""Term frequencies count up to 63 (BM25 saturates long before: k1 = 1.2)."""


def posting_key(pk: keys.Projection, owner: str, token: str) -> str:
    return pk.key("ix", owner, key_part(token))


def meta_key(pk: keys.Projection, owner: str) -> str:
    return pk.key("ix_meta", owner)


def live_key(pk: keys.Projection, owner: str) -> str:
    return pk.key("ix_live", owner)


def stat_key(pk: keys.Projection, owner: str) -> str:
    return pk.key("ix_stat", owner)


def ref(kind: str, item_id: str) -> str:
    return f"{kind}:{item_id}"


class SearchIndex(Projection):
    name: ClassVar[str] = "search"
    key_names: ClassVar[frozenset[str]] = frozenset({"ix", "ix_meta", "ix_live", "ix_stat"})
    handles: ClassVar[frozenset[str]] = frozenset(
        {"episode.saved", "knowledge.learned", "skill.defined", "memory.deleted"}
    )

    def apply(self, event: StoredEvent, ctx: ApplyContext, writes: Writes) -> None:
        item = item_of(event)
        if item is None:
            return
        ttl = ttl_of(ctx.settings, item.kind)
        if ctx.expired(event, ttl):
            return
        pk, owner, version = ctx.keys, event.owner, sortable(event.log_id)
        exp = expiry_ms(event.ts_ms, ttl)
        mk, lk, name = meta_key(pk, owner), live_key(pk, owner), ref(item.kind, item.item_id)
        touched = [mk, lk]
        if item.body is None:
            writes.lwwz(mk, name, version, TOMBSTONE, zkey=lk, member=name, score=None)
        else:
            counts = term_counts(*item.texts)
            length = sum(counts.values())
            meta = [item.kind, item.item_id, event.ts_ms, exp, length, item.importance,
                    item.success, list(item.tags)]  # fmt: skip
            writes.lwwz(mk, name, version, pack(meta), zkey=lk, member=name, score=str(exp))
            sk = stat_key(pk, owner)
            writes.hincr(sk, "docs", 1)
            writes.hincr(sk, "len", length)
            touched.append(sk)
            for token in sorted(counts):
                post = posting_key(pk, owner, token)
                writes.zmax(post, name, exp * TF_SCALE + min(counts[token], TF_MAX))
                writes.prune(post, TF_SCALE)
                touched.append(post)
        writes.prune(lk, hkey=mk)
        if ttl is not None:
            for key in touched:
                writes.expire_at(key, exp)
