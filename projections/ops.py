"""The write ops a projection emits, and their encoding for one ``ms_apply`` call.

Projections never talk to Redis: they describe writes as ops that converge whatever the
delivery order (see workers/lua/apply.lua for their semantics). A batch names each key
once in KEYS, so every key the call touches is declared, and ops refer to keys by index.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

Op = tuple[Any, ...]

VERSION_LEN = 24
"""Length of :func:`sortable` ids; apply.lua compares this many leading bytes."""

KEY_SLOTS: dict[str, tuple[int, ...]] = {
    "LWW": (1,),
    "ZLOG": (1, 4),
    "CLEAR": (1, 2),
    "HMAX": (1,),
    "HINCR": (1,),
    "ZMAX": (1,),
    "ZMIN": (1,),
    "EXPAT": (1,),
    "DEL": (1,),
    "XADD": (1,),
    "SPUB": (1,),
}
"""Positions of key arguments in each op (0 is the op name)."""


def sortable(log_id: str) -> str:
    """A log id as fixed-width text, so byte order equals log order (LWW versions, ZLOG)."""
    ms, _, seq = log_id.partition("-")
    return f"{int(ms):013d}-{int(seq or 0):010d}"


def log_id_of(version: str) -> str:
    ms, _, seq = version.partition("-")
    return f"{int(ms)}-{int(seq)}"


@dataclass(slots=True)
class Writes:
    """The ops of one event, in the order they must run."""

    ops: list[Op] = field(default_factory=list)

    def lww(self, key: str, field_name: str, version: str, value: bytes) -> None:
        """Set ``field`` to ``value`` unless a newer version is already stored."""
        self.ops.append(("LWW", key, field_name, version, value))

    def zlog(
        self,
        key: str,
        version: str,
        value: bytes,
        *,
        cap: int = 0,
        watermark: tuple[str, str] | None = None,
    ) -> None:
        """Add ``value`` in log order; keep the newest ``cap``; skip if cleared."""
        wkey, wfield = watermark if watermark else (None, "")
        self.ops.append(("ZLOG", key, version.encode() + value, cap, wkey, wfield))

    def clear(self, key: str, watermark: tuple[str, str], version: str) -> None:
        """Drop everything older than ``version`` and remember the watermark."""
        self.ops.append(("CLEAR", key, watermark[0], watermark[1], version))

    def hmax(self, key: str, field_name: str, version: str) -> None:
        self.ops.append(("HMAX", key, field_name, version))

    def hincr(self, key: str, field_name: str, amount: int) -> None:
        """Commutative integer counter (floats are kept as scaled ints to stay exact)."""
        self.ops.append(("HINCR", key, field_name, int(amount)))

    def zmax(self, key: str, member: str, score: float) -> None:
        self.ops.append(("ZMAX", key, member, score))

    def zmin(self, key: str, member: str, score: float) -> None:
        self.ops.append(("ZMIN", key, member, score))

    def expire_at(self, key: str, at_ms: int) -> None:
        """Expire ``key`` at ``at_ms`` unless it already lives longer."""
        self.ops.append(("EXPAT", key, int(at_ms)))

    def delete(self, key: str) -> None:
        self.ops.append(("DEL", key))

    def xadd(self, key: str, fields: Iterable[tuple[str, str | bytes]]) -> None:
        flat: list[str | bytes] = []
        for name, value in fields:
            flat += [name, value]
        self.ops.append(("XADD", key, *flat))

    def publish(self, channel: str, message: bytes) -> None:
        self.ops.append(("SPUB", channel, message))


class KeyTable:
    """KEYS of one call: each key once, ops refer to 1-based indices."""

    def __init__(self, first: Sequence[str] = ()) -> None:
        self.keys: list[str] = []
        self._index: dict[str, int] = {}
        for key in first:
            self.index(key)

    def index(self, key: str | None) -> int:
        if key is None:
            return 0
        found = self._index.get(key)
        if found is None:
            self.keys.append(key)
            found = self._index[key] = len(self.keys)
        return found

    def encode(self, ops: Sequence[Op]) -> list[list[Any]]:
        out = []
        for op in ops:
            row = list(op)
            for pos in KEY_SLOTS[op[0]]:
                row[pos] = self.index(row[pos])
            out.append(row)
        return out


def apply_command(
    feed_key: str, group: str, entries: Sequence[tuple[str, Sequence[Op]]]
) -> tuple[Any, ...]:
    """``FCALL ms_apply``: XACK-gated writes for a batch of one partition."""
    table = KeyTable([feed_key])
    body = [[feed_id, table.encode(ops)] for feed_id, ops in entries]
    packed = msgpack.packb(body, use_bin_type=False)
    return ("FCALL", "ms_apply", len(table.keys), *table.keys, group, packed)


def write_command(batches: Sequence[Sequence[Op]]) -> tuple[Any, ...]:
    """``FCALL ms_write``: ungated writes, used by replay for events up to the cutoff."""
    table = KeyTable()
    body = [table.encode(ops) for ops in batches]
    packed = msgpack.packb(body, use_bin_type=False)
    return ("FCALL", "ms_write", len(table.keys), *table.keys, packed)
