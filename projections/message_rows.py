"""Which stored message vectors a semantic search keeps, and the top of their ranking,
with numpy over whole columns instead of Python over every row.

A message vector's id is ``<session>:<version>`` (:func:`.vectors.message_ref`). A search
keeps a row when it is of the asked session, newer than its session's last clear, not
past its own expiry, and of a session whose history still exists (:mod:`.message_life`);
it then returns the ``depth`` best by (cosine rounded to 9 digits descending, id
ascending). Splitting 100,000 ids and sorting every kept row in Python cost more than the
matrix product, so each matrix's ids are split once into a session code per row and a
version column (:class:`RefIndex`, kept per matrix by the reader), the filters are
vector comparisons, and only the rows that can reach the top ``depth`` (found with
``argpartition``, ties at the boundary included) are sorted by the exact old key.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

KEPT_INDEXES = 8
"""Matrices whose split ids a reader keeps: one per owner searched lately (a matrix is
replaced, and its index with it, when its owner's vectors change)."""


@dataclass(frozen=True, slots=True)
class RefIndex:
    """A matrix's ids split: ``sessions[codes[i]]`` is row ``i``'s session and
    ``versions[i]`` its version (bytes, so comparisons run as Python's ``str`` ones do on
    these ASCII ids)."""

    sessions: list[str]
    code_of: dict[str, int]
    codes: npt.NDArray[np.intp]
    versions: npt.NDArray[np.bytes_]


def split_refs(refs: Sequence[str]) -> RefIndex:
    """The :class:`RefIndex` of ``refs``: one pass in Python, done once per matrix."""
    import numpy as np

    code_of: dict[str, int] = {}
    codes, versions = [], []
    for ref in refs:
        name, _, version = ref.partition(":")
        codes.append(code_of.setdefault(name, len(code_of)))
        versions.append(version.encode())
    return RefIndex(list(code_of), code_of, np.asarray(codes, dtype=np.intp),
                    np.asarray(versions, dtype=np.bytes_))  # fmt: skip


def ref_index(r: Any, refs: list[str]) -> RefIndex:
    """``refs`` split, from the reader's small cache when this very list was split before
    (a matrix's ``refs`` is never changed in place: a changed owner gets a new matrix)."""
    kept: OrderedDict[int, tuple[list[str], RefIndex]] = r.__dict__.setdefault(
        "_message_ref_indexes", OrderedDict()
    )
    found = kept.get(id(refs))
    if found is not None and found[0] is refs:
        kept.move_to_end(id(refs))
        return found[1]
    index = split_refs(refs)
    kept[id(refs)] = (refs, index)  # holding the list keeps its id from being reused
    while len(kept) > KEPT_INDEXES:
        kept.popitem(last=False)
    return index


def kept_rows(
    index: RefIndex,
    expiry: npt.NDArray[np.int64],
    marks: Mapping[bytes, bytes],
    session: str | None,
    now_ms: int,
) -> npt.NDArray[np.bool_]:
    """Rows of ``session`` (every session when None) newer than their session's clear
    mark in ``marks`` (the history watermark hash: ``hist:<session>`` -> version) and not
    past their own expiry."""
    import numpy as np

    keep: npt.NDArray[np.bool_] = expiry > now_ms
    if session is not None:
        code = index.code_of.get(session)
        if code is None:
            return np.zeros(len(index.codes), dtype=np.bool_)
        keep &= index.codes == code
    if marks:
        got = [marks.get(f"hist:{name}".encode()) for name in index.sessions]
        if any(mark is not None for mark in got):
            has = np.asarray([mark is not None for mark in got], dtype=np.bool_)
            mark_of = np.asarray([mark or b"" for mark in got], dtype=np.bytes_)
            keep &= ~has[index.codes] | (index.versions > mark_of[index.codes])
    return keep


def top(
    sims: npt.NDArray[np.float64], rows: npt.NDArray[np.intp], refs: Sequence[str], depth: int
) -> list[tuple[str, float]]:
    """(id, score) of the ``depth`` best rows, best first: ``sims[j]`` is the score of row
    ``rows[j]``, whose id is ``refs[rows[j]]``; ordered by score descending, then id
    ascending, as sorting every row by that key would."""
    import numpy as np

    if len(sims) > depth:
        # The depth-th best score: every row at or above it may be in the top, ties at
        # it included, so the exact key decides among those few alone.
        bound = -np.partition(-sims, depth - 1)[depth - 1]
        near = np.flatnonzero(sims >= bound)
    else:
        near = np.arange(len(sims))
    scores = sims[near].tolist()
    ids = [refs[i] for i in rows[near].tolist()]
    ranked = sorted(zip(scores, ids, strict=True), key=lambda hit: (-hit[0], hit[1]))
    return [(ref, score) for score, ref in ranked[:depth]]
