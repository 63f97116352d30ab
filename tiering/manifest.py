"""The per-owner manifest: which log segments are archived, in log order.

A lexicographic sorted set (``keys.manifest(p, owner)``, score 0) of members
``<last>|<first>|<count>|<bytes>|<raw>|<sha256>|<object name>`` with sortable ids
(13-digit ms, 10-digit seq), so byte order is log order and ``ZRANGE BYLEX`` finds the
segment that holds an id without reading the rest. Segments never overlap; each is
added by ``ms_tier_commit`` in the same call that trims its entries from the log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from memstream.projections.ops import log_id_of, sortable


@dataclass(frozen=True, slots=True)
class Segment:
    first: str
    """Stream id of the first entry (plain form, e.g. ``1700000000000-0``)."""
    last: str
    count: int
    size: int
    """Compressed size, as stored."""
    raw: int
    """msgpack size before compression."""
    sha256: str
    name: str

    @property
    def first_sortable(self) -> str:
        return sortable(self.first)

    @property
    def last_sortable(self) -> str:
        return sortable(self.last)

    def member(self) -> str:
        return "|".join((self.last_sortable, self.first_sortable, str(self.count),
                         str(self.size), str(self.raw), self.sha256, self.name))  # fmt: skip

    @classmethod
    def parse(cls, raw: bytes | str) -> Segment:
        text = raw.decode() if isinstance(raw, bytes) else raw
        last, first, count, size, rawsize, digest, name = text.split("|", 6)
        return cls(log_id_of(first), log_id_of(last), int(count), int(size), int(rawsize),
                   digest, name)  # fmt: skip


def after(cursor: str | None) -> tuple[Any, ...]:
    """ZRANGE arguments for the first segment whose last id is after ``cursor``
    (exclusive; None means from the start). ``}`` sorts after ``|``, so the bound
    ``[<cursor>}`` skips a segment that ends exactly at the cursor."""
    low = "-" if cursor is None else f"[{sortable(cursor)}}}"
    return (low, "+", "BYLEX", "LIMIT", 0, 1)


def at_or_after(cursor: str) -> tuple[Any, ...]:
    """ZRANGE arguments for the first segment whose last id is at or after ``cursor``."""
    return (f"[{sortable(cursor)}", "+", "BYLEX", "LIMIT", 0, 1)


def before(cursor: str | None) -> tuple[Any, ...]:
    """ZRANGE arguments for the last segment whose last id is before ``cursor``
    (None: the newest segment)."""
    high = "+" if cursor is None else f"({sortable(cursor)}"
    return (high, "-", "BYLEX", "REV", "LIMIT", 0, 1)
