"""Semantic message search's numpy filters and top-k (projections/message_rows.py) give
exactly what the per-row Python they replaced gave: the same rows, the same order,
ties broken by id, ties at the depth boundary included."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from memstream.projections.message_rows import kept_rows, ref_index, split_refs, top
from memstream.projections.ops import sortable

NOW = 1_700_000_000_000


def _old_kept(
    refs: list[str], expiry: Any, marks: dict[bytes, bytes], session: str | None, now: int
) -> list[int]:
    """The loop of reads_vectors._semantic before numpy (commit a9c8620)."""
    keep = []
    for i, ref in enumerate(refs):
        name, _, version = ref.partition(":")
        if session is not None and name != session:
            continue
        mark = marks.get(f"hist:{name}".encode())
        if (mark is None or version > mark.decode()) and expiry[i] > now:
            keep.append(i)
    return keep


def _old_top(sims: Any, refs: list[str], keep: list[int], depth: int) -> list[tuple[str, float]]:
    ranked = sorted(range(len(keep)), key=lambda j: (-sims[j], refs[keep[j]]))[:depth]
    return [(refs[keep[j]], float(sims[j])) for j in ranked]


rows_st = st.lists(
    st.tuples(
        st.sampled_from(["s1", "s2", "s3", "a.b"]),
        st.integers(1, 40),  # the message's log id ms
        st.sampled_from([NOW - 1, NOW + 1, NOW + 10_000]),  # expiry: one already past
        st.sampled_from([0.5, 0.25, -0.125, 0.0]),  # few values: many ties
    ),
    unique_by=lambda row: (row[0], row[1]),
    max_size=60,
)


@given(
    rows_st,
    st.dictionaries(st.sampled_from(["s1", "s2", "s9"]), st.integers(0, 41), max_size=3),
    st.sampled_from([None, "s1", "s2", "nobody"]),
    st.integers(1, 12),
)
def test_filters_and_top_match_the_python_loop(
    rows: list[tuple[str, int, int, float]],
    clears: dict[str, int],
    session: str | None,
    depth: int,
) -> None:
    refs = [f"{name}:{sortable(f'{ms}-0')}" for name, ms, _, _ in rows]
    expiry = np.asarray([e for _, _, e, _ in rows], dtype=np.int64)
    sims_all = np.asarray([s for _, _, _, s in rows], dtype=np.float64)
    marks = {f"hist:{name}".encode(): sortable(f"{ms}-0").encode() for name, ms in clears.items()}
    want = _old_kept(refs, expiry, marks, session, NOW)
    mask = kept_rows(split_refs(refs), expiry, marks, session, NOW)
    rows_kept = np.flatnonzero(mask)
    assert rows_kept.tolist() == want
    if want:
        sims = sims_all[rows_kept]
        assert top(sims, rows_kept, refs, depth) == _old_top(sims, refs, want, depth)


def test_top_includes_every_tie_at_the_boundary() -> None:
    refs = [f"s:{sortable(f'{ms}-0')}" for ms in (9, 8, 7, 6, 5)]
    sims = np.asarray([0.1, 0.9, 0.5, 0.5, 0.5])
    rows = np.arange(5)
    # Three rows tie for second place: the id decides which two of them make it.
    assert top(sims, rows, refs, 3) == [(refs[1], 0.9), (refs[4], 0.5), (refs[3], 0.5)]
    assert top(sims, rows, refs, 10) == [(refs[1], 0.9), (refs[4], 0.5), (refs[3], 0.5),
                                         (refs[2], 0.5), (refs[0], 0.1)]  # fmt: skip


def test_a_clear_hides_its_session_only_up_to_its_mark() -> None:
    refs = [f"s1:{sortable('5-0')}", f"s1:{sortable('7-0')}", f"s2:{sortable('5-0')}"]
    expiry = np.full(3, NOW + 1, dtype=np.int64)
    marks = {b"hist:s1": sortable("5-0").encode(), b"wm-other": b"x"}
    index = split_refs(refs)
    assert index.sessions == ["s1", "s2"] and index.codes.tolist() == [0, 0, 1]
    assert kept_rows(index, expiry, marks, None, NOW).tolist() == [False, True, True]
    assert kept_rows(index, expiry, marks, "s2", NOW).tolist() == [False, False, True]
    assert not kept_rows(index, expiry, {}, "nobody", NOW).any()


def test_the_reader_splits_a_matrix_once_and_forgets_old_ones() -> None:
    class Reader:
        pass

    reader = Reader()
    refs = [f"s1:{sortable('5-0')}"]
    first = ref_index(reader, refs)
    assert ref_index(reader, refs) is first
    assert ref_index(reader, list(refs)) is not first  # another matrix: split again
    for n in range(20):
        ref_index(reader, [f"s{n}:{sortable('5-0')}"])
    assert len(reader.__dict__["_message_ref_indexes"]) == 8
