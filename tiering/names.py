"""Every object name in the archive is built here, and only here (like
:mod:`memstream.producers.keys` for Redis keys).

Layout under the archive's prefix::

    p<P>/<owner>/log/<first>_<last>.seg      a log segment (sortable first and last ids)
    p<P>/<owner>/cold/v<N>/<name>/<first>_<last>.bin   cold projection values

Everything of one owner lives under ``p<P>/<owner>/``, so forget deletes one prefix, and
the trailing ``/`` keeps a bystander (``alice2``) out of ``alice``'s listing. Owners and
parts pass :func:`check_id` (no ``/``), ids are fixed-width sortable log ids, so a name
sorts in log order and can never escape its folder.
"""

from __future__ import annotations

import re

from memstream.producers.keys import check_id
from memstream.projections.ops import sortable

_SORTABLE = re.compile(r"\d{13}-\d{10}")
_SEGMENT = re.compile(r"p(\d+)/([^/]+)/log/(\d{13}-\d{10})_(\d{13}-\d{10})\.seg")


def _sortable_id(log_id: str, field: str) -> str:
    if not re.fullmatch(r"\d{1,13}-\d{1,10}", log_id):
        raise ValueError(f"{field} must be a stream id like 1700000000000-0, got {log_id!r}")
    return sortable(log_id)


def owner_prefix(p: int, owner: str) -> str:
    """Every object of ``owner`` (segments and cold values) starts with this."""
    if p < 0:
        raise ValueError("partition must be >= 0")
    return f"p{int(p)}/{check_id(owner)}/"


def segment(p: int, owner: str, first: str, last: str) -> str:
    """The object holding ``owner``'s log entries ``first`` to ``last`` (stream ids)."""
    a, b = _sortable_id(first, "first"), _sortable_id(last, "last")
    if a > b:
        raise ValueError(f"first {first} is after last {last}")
    return f"{owner_prefix(p, owner)}log/{a}_{b}.seg"


def parse_segment(name: str) -> tuple[int, str, str, str] | None:
    """(partition, owner, first, last) of a segment name (sortable ids), or None."""
    m = _SEGMENT.fullmatch(name)
    if m is None:
        return None
    return int(m.group(1)), m.group(2), m.group(3), m.group(4)


def cold_value(p: int, owner: str, version: int, name: str, *, first: str, last: str) -> str:
    """An object of cold projection values of one kind (``name``, e.g. ``episode``) in
    projection ``version``, holding values written by events ``first`` to ``last``
    (sortable ids). The version is in the name so a rebuilt version never overwrites an
    object the old version's pointers still name."""
    check_id(name, "name")
    a, b = (x if _SORTABLE.fullmatch(x) else _sortable_id(x, "id") for x in (first, last))
    return f"{owner_prefix(p, owner)}cold/v{int(version)}/{name}/{a}_{b}.bin"
