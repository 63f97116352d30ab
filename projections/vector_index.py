"""The reader's view of stored vectors: each owner's matrix per kind, kept in memory and
patched from the change stream.

Fetching 100,000 vectors per query would cost more than the search (a 27 MB reply), so a
reader keeps each (owner, kind) matrix it has loaded (:mod:`.vector_matrix`) and checks
it per query with one small ``HGETALL`` of ``vec_meta``, pipelined with the other
scopes' checks and with an ``XRANGE`` of the change stream ``vec_c`` from the last entry
the matrix includes (its :class:`Mark`):

- the write count ``n:<space>`` and the newest version ``v:<space>`` (both written in
  the ack-gated apply, with the vector) unchanged: the matrix is current. The newest
  version alone would miss an older event applied late (a consumer behind another); the
  count alone would miss a forget followed by as many new writes; together they change
  for every write;
- changed, and the stream still holds the mark's entry: every write since is an entry
  after it (the same ack-gated call adds both), so the reader fetches only those refs
  (``HMGET``) and patches the matrix (update, append, or delete a row);
- otherwise the hash is loaded whole (``HGETALL``): the mark's entry was trimmed (more
  than ``min(cap, HLEN)`` writes since, or :data:`PATCH_MAX` to apply), or is gone with
  the stream (a forget or ``replay --owner`` deletes it), or the count rose by more than
  the entries (a writer that records no change: a worker of an older release during an
  upgrade). A ``replay`` moves to another version's keys: a new matrix. An entry's id
  is its position and a digest chained over every (change, version) up to it (apply.lua,
  ``VCHG``), so a stream made again after a forget holds the mark's id only if it went
  through the very same writes, when it describes the very same hash.

Expired vectors need no write: each row keeps its expiry and the ranking masks rows past
it. A reader serves on one event loop, so a patch never runs during another one.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from memstream.producers import keys
from memstream.producers.errors import ConfigError

from .base import Query
from .codec import unpack
from .ops import VERSION_LEN
from .vector_matrix import Mark, Matrix, Stamp, load, newest, patch
from .vectors import change_key, meta_key, vector_key

__all__ = ["Found", "Matrix", "Space", "VectorCache", "matrices", "space_error"]

MAX_ROWS = 2_000_000
"""Rows a reader keeps at most (about 2 GB of float32 at 256 dimensions): past it the
least recently used matrices are dropped and loaded again when asked for."""
PATCH_MAX = 10_000
"""Changes a reader applies to a cached matrix at most (one ``XRANGE`` reply); past it
the hash is loaded whole. Writers keep about as many (``vectors.CHANGES_CAP``)."""


@dataclass(frozen=True, slots=True)
class Space:
    """The reader's embedder: its key part, name and dimension."""

    id: str
    name: str
    dimension: int


@dataclass(slots=True)
class Found:
    """What the meta check found for one (owner, kind): its matrix (None when the owner
    has no vectors of the reader's space) and the other spaces' names it holds."""

    owner: str
    kind: str
    matrix: Matrix | None
    others: list[str] = field(default_factory=list)


class VectorCache:
    """(vector key) -> newest :class:`Matrix`, least recently used first out; ``loads``
    counts whole loads and ``patches`` the matrices patched from the change stream."""

    def __init__(self, max_rows: int = MAX_ROWS) -> None:
        self.max_rows = max_rows
        self.loads = 0
        self.patches = 0
        self._entries: OrderedDict[str, Matrix] = OrderedDict()
        self._rows = 0

    def peek(self, key: str) -> Matrix | None:
        """The matrix cached under ``key``, whatever its stamp (the LRU order kept)."""
        return self._entries.get(key)

    def get(self, key: str, stamp: Stamp) -> Matrix | None:
        """The matrix under ``key`` if it was made at ``stamp``, marked recently used."""
        found = self._entries.get(key)
        if found is None or found.stamp != stamp:
            return None
        self._entries.move_to_end(key)
        return found

    def drop(self, key: str) -> None:
        """Forget the matrix under ``key`` (its vectors are gone: a forget, an expiry)."""
        old = self._entries.pop(key, None)
        self._rows -= len(old.refs) if old is not None else 0

    def put(self, key: str, matrix: Matrix, *, patched: bool = False) -> None:
        """Cache ``matrix`` under ``key``: a whole load, or a patch when ``patched``."""
        old = self._entries.pop(key, None)
        self._rows -= len(old.refs) if old is not None else 0
        self._entries[key] = matrix
        self._rows += len(matrix.refs)
        if patched:
            self.patches += 1
        else:
            self.loads += 1
        while self._rows > self.max_rows and len(self._entries) > 1:
            _, dropped = self._entries.popitem(last=False)
            self._rows -= len(dropped.refs)


def _first(entry: Any) -> tuple[bytes, bytes]:
    """The one field of a change entry: (``r``, ref) or (``x``, ref prefix)."""
    fields = entry[1]
    return next(iter(fields.items())) if fields else (b"", b"")


def _mark_of(last: Any, count: Any) -> Mark | None:
    """The mark of a matrix loaded whole: the stream's last entry, the count after it."""
    if not isinstance(last, list) or not last or count is None:
        return None
    return Mark(last[0][0], _first(last[0]), int(count))


def _changed(m: Matrix, entries: Any, stamp: Stamp) -> tuple[list[str], Mark] | None:
    """The refs to fetch to bring ``m`` up to date from the change stream's ``entries``
    (from its mark on) and the mark after them, or None when only a whole load can."""
    mark = m.mark
    if mark is None or not isinstance(entries, list) or not entries or not newest(m):
        return None
    if entries[0][0] != mark.entry:
        return None
    if _first(entries[0]) != mark.ref or stamp[0] is None:
        return None  # a digest collision, however unlikely, loads the hash
    fresh = entries[1:]
    if len(fresh) > PATCH_MAX or int(stamp[0]) - mark.count > len(fresh):
        return None
    refs: set[str] = set()
    prefixes: list[str] = []
    for entry in fresh:
        what, ref = _first(entry)
        (refs.add if what == b"r" else prefixes.append)(ref.decode())
    if prefixes:  # a TTL extension raised every vector of a session: refetch them
        starts = tuple(prefixes)
        refs.update(r for r in m.refs if r.startswith(starts))
    last = fresh[-1] if fresh else entries[0]
    return sorted(refs), Mark(last[0], _first(last), mark.count + len(fresh))


@dataclass(frozen=True, slots=True)
class _Stale:
    """One (owner, kind) whose cached matrix is not current: what the second round trip
    reads for it (``refs`` to patch ``base`` with, or the whole hash when ``base`` is None)."""

    at: int
    vk: str
    ck: str
    mk: str
    stamp: Stamp
    base: Matrix | None = None
    refs: tuple[str, ...] = ()
    mark: Mark | None = None

    def commands(self, count_field: str) -> list[tuple[Any, ...]]:
        if self.base is not None:
            return [("HMGET", self.vk, *self.refs)]
        # The stream's end first: a change after it may be in the hash read next, and
        # fetching it again later is harmless; a change before it is in the hash.
        return [("XREVRANGE", self.ck, "+", "-", "COUNT", 1), ("HGET", self.mk, count_field),
                ("HGETALL", self.vk)]  # fmt: skip


def matrices(
    cache: VectorCache,
    scopes: Sequence[tuple[str, keys.Projection]],
    kinds: Sequence[str],
    space: Space,
) -> Query[list[Found]]:
    """The matrices of every (owner, kind): one ``HGETALL`` of ``vec_meta`` each (with an
    ``XRANGE`` of the change stream where a matrix is cached), then the refs changed
    since (``HMGET``) or the whole hash of those not current (a second round trip)."""
    pairs = [(owner, pk, kind) for owner, pk in scopes for kind in kinds]
    count_field = f"n:{space.id}"
    vks = [vector_key(pk, owner, space.id, kind) for owner, pk, kind in pairs]
    cks = [change_key(pk, owner, space.id, kind) for owner, pk, kind in pairs]
    mks = [meta_key(pk, owner, kind) for owner, pk, kind in pairs]
    cached = [cache.peek(vk) for vk in vks]
    commands: list[tuple[Any, ...]] = []
    for mk, ck, m in zip(mks, cks, cached, strict=True):
        commands.append(("HGETALL", mk))
        if m is not None and m.mark is not None:
            commands.append(("XRANGE", ck, m.mark.entry, "+", "COUNT", PATCH_MAX + 1))

    def checked(replies: list[Any]) -> list[Found] | Query[list[Found]]:
        found: list[Found] = []
        stale: list[_Stale] = []
        at = iter(replies)
        for (owner, _, kind), vk, ck, mk, m in zip(pairs, vks, cks, mks, cached, strict=True):
            meta = next(at)
            entries = next(at) if m is not None and m.mark is not None else None
            others = [
                str(unpack(v[VERSION_LEN:])[0])
                for k, v in meta.items()
                if k.startswith(b"space:") and k != f"space:{space.id}".encode()
            ]
            item = Found(owner, kind, None, others)
            found.append(item)
            stamp = (meta.get(count_field.encode()), meta.get(f"v:{space.id}".encode()))
            if stamp == (None, None):
                cache.drop(vk)  # forgotten or expired: keep none of its vectors in memory
                continue
            item.matrix = cache.get(vk, stamp)
            if item.matrix is not None:
                continue
            plan = _changed(m, entries, stamp) if m is not None else None
            if m is None or plan is None:
                stale.append(_Stale(len(found) - 1, vk, ck, mk, stamp))
            elif not plan[0]:  # no vector to fetch (say, the mark already had them)
                item.matrix = dataclasses.replace(m, stamp=stamp, mark=plan[1])
                if cache.peek(vk) is m:  # else another search replaced it meanwhile
                    cache.put(vk, item.matrix, patched=True)
            else:
                stale.append(_Stale(len(found) - 1, vk, ck, mk, stamp, m, tuple(plan[0]), plan[1]))
        if not stale:
            return found
        second = [command for s in stale for command in s.commands(count_field)]
        return Query(second, lambda replies: _loaded(cache, space, found, stale, replies))

    return Query(commands, checked)


def _loaded(
    cache: VectorCache, space: Space, found: list[Found], stale: list[_Stale], replies: list[Any]
) -> list[Found]:
    at = iter(replies)
    for s in stale:
        if s.base is None:
            last, count, raw = next(at), next(at), next(at)
            matrix = load(raw, space.dimension, s.stamp, _mark_of(last, count))
            cache.put(s.vk, matrix)
        else:
            assert s.mark is not None
            values = dict(zip(s.refs, next(at), strict=True))
            if cache.peek(s.vk) is not s.base:
                # Another search patched or loaded it meanwhile (both read the same
                # stamp): that matrix is at least as new; a patch of ``base`` would undo it.
                matrix = cache.peek(s.vk) or s.base
            else:
                matrix = patch(s.base, values, space.dimension, s.stamp, s.mark)
                cache.put(s.vk, matrix, patched=True)
        found[s.at].matrix = matrix
    return found


def space_error(found: Sequence[Found], space: Space) -> ConfigError | None:
    """The error for a semantic search over vectors of another embedder only, or None."""
    if any(f.matrix is not None for f in found):
        return None
    others = sorted({name for f in found for name in f.others})
    if not others:
        return None
    return ConfigError(
        f"the stored vectors were made by embedder {', '.join(others)}, this reader uses "
        f"{space.name} ({space.dimension} dimensions): set the same embedder, or rebuild the "
        "vectors with `memstream replay` after switching the workers (docs/search.md)"
    )
