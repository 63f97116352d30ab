"""One (owner, kind)'s vectors in a reader's memory, patched in place as they change.

A :class:`Matrix` is a snapshot: ``refs[i]`` names row ``i`` of ``rows`` and ``expiry``.
The snapshots of one (owner, kind) share a :class:`Store`, so a patch costs the rows it
changes, not a copy of 100,000 of them (about 100 MB at 256 dimensions):

- an update writes its row in place: a query still ranking an older snapshot reads the
  newer vector of the same ref, never another ref's;
- a delete sets its row's expiry to 0, so every snapshot masks the row as expired (the
  ranking already masks rows past their expiry) and no row moves;
- an append writes past the end of every older snapshot, which therefore never sees it;
  the capacity grows by half when it is full (a new buffer: older snapshots keep theirs).

Deleted rows are compacted away, into a new store, once they are a quarter of the rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .ops import VERSION_LEN
from .vector_codec import HEAD, decode_many

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

Stamp = tuple[bytes | None, bytes | None]
"""(write count, newest version) of ``vec_meta`` when a snapshot was made."""
HEADROOM = 8
"""A loaded matrix gets 1/HEADROOM more rows of capacity, so the first appends after a
load do not copy it."""


@dataclass(frozen=True, slots=True)
class Mark:
    """Where a snapshot stands in the change stream: the id and ref of the last entry it
    includes, and the owner's write count at that entry (``n:<space>``, one per entry)."""

    entry: bytes
    ref: tuple[bytes, bytes]
    count: int


@dataclass(slots=True)
class Store:
    """The buffers the snapshots of one (owner, kind) share."""

    rows: npt.NDArray[np.float32]
    expiry: npt.NDArray[np.int64]
    index: dict[str, int]
    size: int
    """Rows of the newest snapshot: only that one may be patched (it alone knows them)."""
    dead: int = 0


@dataclass(frozen=True, slots=True)
class Matrix:
    """One (owner, kind)'s live-or-expiring vectors: ``refs[i]`` is row ``i``'s id."""

    stamp: Stamp
    refs: list[str]
    rows: npt.NDArray[np.float32]
    expiry: npt.NDArray[np.int64]
    store: Store
    mark: Mark | None = None


def _live(values: Mapping[str, bytes | None], dimension: int) -> tuple[list[str], list[bytes]]:
    width = VERSION_LEN + HEAD.size + dimension
    refs, payloads = [], []
    for ref, value in values.items():
        if value is not None and len(value) == width:  # a tombstone is the version alone
            refs.append(ref)
            payloads.append(value)
    return refs, payloads


def load(raw: Mapping[bytes, bytes], dimension: int, stamp: Stamp, mark: Mark | None) -> Matrix:
    """A new snapshot (and store) of a vector hash read whole (``HGETALL``: ref -> stored
    value). No Python per row but the refs' decode: 100,000 rows are a whole load."""
    import numpy as np

    names, values = list(raw), list(raw.values())
    width = VERSION_LEN + HEAD.size + dimension
    live = np.fromiter(map(len, values), np.int64, len(values)) == width  # not tombstones
    if not live.all():
        names = [k for k, ok in zip(names, live.tolist(), strict=True) if ok]
        values = [v for v, ok in zip(values, live.tolist(), strict=True) if ok]
    refs = [k.decode() for k in names]
    n = len(refs)
    capacity = n + n // HEADROOM + 16
    store = Store(np.zeros((capacity, dimension), np.float32), np.zeros(capacity, np.int64),
                  dict(zip(refs, range(n), strict=True)), n)  # fmt: skip
    _, expiry = decode_many(values, dimension, VERSION_LEN, out=store.rows[:n])
    store.expiry[:n] = expiry
    return _snapshot(store, refs, stamp, mark)


def _snapshot(store: Store, refs: list[str], stamp: Stamp, mark: Mark | None) -> Matrix:
    n = store.size = len(refs)
    return Matrix(stamp, refs, store.rows[:n], store.expiry[:n], store, mark)


def _grow(store: Store, n: int, needed: int) -> None:
    import numpy as np

    capacity = max(needed, len(store.expiry) * 3 // 2)
    rows = np.zeros((capacity, store.rows.shape[1]), np.float32)
    expiry = np.zeros(capacity, np.int64)
    rows[:n] = store.rows[:n]
    expiry[:n] = store.expiry[:n]
    store.rows, store.expiry = rows, expiry


def newest(m: Matrix) -> bool:
    """Whether ``m`` holds every row of its store, as the newest snapshot does: a patch
    of an older one would append over rows that a newer one already gave to other refs.
    (Snapshots of one length share their refs, so any of them may be patched.)"""
    return m.store.size == len(m.refs)


def patch(
    m: Matrix, values: Mapping[str, bytes | None], dimension: int, stamp: Stamp, mark: Mark
) -> Matrix:
    """The snapshot after ``values`` (ref -> its stored value now, None when it is gone
    from the hash): live values update or append their row, others delete theirs. ``m``
    must be the newest snapshot of its store (:func:`newest`)."""
    import numpy as np

    store, refs = m.store, m.refs
    if not newest(m):
        raise ValueError("only the newest snapshot of a matrix can be patched")
    live, payloads = _live(values, dimension)
    n, appended, targets = len(refs), list[str](), list[int]()
    for ref in live:
        i = store.index.get(ref)
        if i is None:
            i = store.index[ref] = n + len(appended)
            appended.append(ref)
        targets.append(i)
    if appended:
        if n + len(appended) > len(store.expiry):
            _grow(store, n, n + len(appended))
        refs = refs + appended
    if targets:
        rows, expiry = decode_many(payloads, dimension, VERSION_LEN)
        at = np.asarray(targets, np.int64)
        back = at[at < n]  # deleted rows written again (appended rows are new, not dead)
        store.dead -= int(np.count_nonzero(store.expiry[back] == 0))
        store.rows[at] = rows
        store.expiry[at] = expiry
    kept = set(live)
    gone = [store.index[r] for r in values if r not in kept and r in store.index]
    if gone:
        at = np.asarray(gone, np.int64)
        store.dead += int(np.count_nonzero(store.expiry[at] != 0))
        store.expiry[at] = 0
    if store.dead * 4 > len(refs):
        return _compacted(store, refs, stamp, mark)
    return _snapshot(store, refs, stamp, mark)


def _compacted(store: Store, refs: list[str], stamp: Stamp, mark: Mark) -> Matrix:
    import numpy as np

    n = len(refs)
    keep = np.nonzero(store.expiry[:n] != 0)[0]
    kept = [refs[int(i)] for i in keep]
    capacity = len(kept) + len(kept) // HEADROOM + 16
    fresh = Store(np.zeros((capacity, store.rows.shape[1]), np.float32),
                  np.zeros(capacity, np.int64), dict(zip(kept, range(len(kept)), strict=True)),
                  len(kept))  # fmt: skip
    fresh.rows[: len(kept)] = store.rows[keep]
    fresh.expiry[: len(kept)] = store.expiry[keep]
    return _snapshot(fresh, kept, stamp, mark)
