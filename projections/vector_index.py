"""The reader's view of stored vectors: each owner's matrix per kind, kept in memory.

Fetching 100,000 vectors per query would cost more than the search (a 27 MB reply), so a
reader keeps each (owner, kind) matrix it has loaded and checks it with one small HGETALL
of ``vec_meta`` per query, pipelined with the other scopes' checks: the write count and
the newest version (both written in the ack-gated apply, with the vector) change on
every write, so an unchanged pair means an unchanged hash. A forget or ``replay`` drops
``vec_meta`` (or moves to another version's keys): the pair changes and the matrix is
loaded again. Expired vectors need no write: each row keeps its expiry and the ranking
masks rows past it. The newest version alone would miss an older event applied late (a
consumer behind another); the count alone would miss a forget followed by as many new
writes; together they change for every write.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from memstream.producers import keys
from memstream.producers.errors import ConfigError

from .base import Query
from .codec import unpack
from .ops import VERSION_LEN
from .vector_codec import HEAD, decode_many
from .vectors import meta_key, vector_key

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

MAX_ROWS = 2_000_000
"""Rows a reader keeps at most (about 2 GB of float32 at 256 dimensions): past it the
least recently used matrices are dropped and loaded again when asked for."""


@dataclass(frozen=True, slots=True)
class Space:
    """The reader's embedder: its key part, name and dimension."""

    id: str
    name: str
    dimension: int


@dataclass(slots=True)
class Matrix:
    """One (owner, kind)'s live-or-expiring vectors: ``refs[i]`` is row ``i``'s id."""

    stamp: tuple[bytes | None, bytes | None]
    refs: list[str]
    rows: npt.NDArray[np.float32]
    expiry: npt.NDArray[np.int64]


@dataclass(slots=True)
class Found:
    """What the meta check found for one (owner, kind): its matrix (None when the owner
    has no vectors of the reader's space) and the other spaces' names it holds."""

    owner: str
    kind: str
    matrix: Matrix | None
    others: list[str] = field(default_factory=list)


class VectorCache:
    """(vector key) -> :class:`Matrix`, least recently used first out."""

    def __init__(self, max_rows: int = MAX_ROWS) -> None:
        self.max_rows = max_rows
        self.loads = 0
        self._entries: OrderedDict[str, Matrix] = OrderedDict()
        self._rows = 0

    def get(self, key: str, stamp: tuple[bytes | None, bytes | None]) -> Matrix | None:
        found = self._entries.get(key)
        if found is None or found.stamp != stamp:
            return None
        self._entries.move_to_end(key)
        return found

    def put(self, key: str, matrix: Matrix) -> None:
        old = self._entries.pop(key, None)
        self._rows -= len(old.refs) if old is not None else 0
        self._entries[key] = matrix
        self._rows += len(matrix.refs)
        self.loads += 1
        while self._rows > self.max_rows and len(self._entries) > 1:
            _, dropped = self._entries.popitem(last=False)
            self._rows -= len(dropped.refs)


def _load(raw: dict[bytes, bytes], stamp: Any, dimension: int) -> Matrix:
    refs, payloads = [], []
    width = VERSION_LEN + HEAD.size + dimension
    for ref, value in raw.items():
        if len(value) == width:  # a tombstone is the version alone
            refs.append(ref.decode())
            payloads.append(value[VERSION_LEN:])
    rows, expiry = decode_many(payloads, dimension)
    return Matrix(stamp, refs, rows, expiry)


def matrices(
    cache: VectorCache,
    scopes: Sequence[tuple[str, keys.Projection]],
    kinds: Sequence[str],
    space: Space,
) -> Query[list[Found]]:
    """The matrices of every (owner, kind): one HGETALL of ``vec_meta`` each, then the
    vector hashes of those that changed since they were cached (a second round trip)."""
    pairs = [(owner, pk, kind) for owner, pk in scopes for kind in kinds]

    def checked(replies: list[Any]) -> list[Found] | Query[list[Found]]:
        found: list[Found] = []
        stale: list[tuple[int, str, Any]] = []
        for (owner, pk, kind), meta in zip(pairs, replies, strict=True):
            others = [
                str(unpack(v[VERSION_LEN:])[0])
                for k, v in meta.items()
                if k.startswith(b"space:") and k != f"space:{space.id}".encode()
            ]
            item = Found(owner, kind, None, others)
            found.append(item)
            stamp = (meta.get(f"n:{space.id}".encode()), meta.get(f"v:{space.id}".encode()))
            if stamp == (None, None):
                continue
            vk = vector_key(pk, owner, space.id, kind)
            item.matrix = cache.get(vk, stamp)
            if item.matrix is None:
                stale.append((len(found) - 1, vk, stamp))
        if not stale:
            return found

        def loaded(replies: list[Any]) -> list[Found]:
            for (i, vk, stamp), raw in zip(stale, replies, strict=True):
                matrix = _load(raw, stamp, space.dimension)
                cache.put(vk, matrix)
                found[i].matrix = matrix
            return found

        return Query([("HGETALL", vk) for _, vk, _ in stale], loaded)

    commands = [("HGETALL", meta_key(pk, owner, kind)) for owner, pk, kind in pairs]
    return Query(commands, checked)


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
