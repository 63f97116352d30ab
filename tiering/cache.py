"""A bounded in-process cache of decoded segments, shared by a process's readers.

Segments are immutable once named in a manifest, so a cached copy is never stale; it is
keyed by object name and sha256 all the same, so a forgotten owner's re-archived segment
with the same name can never be served from an old copy.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from .segment import Row

DEFAULT_MAX_BYTES = 64 * 1024 * 1024


class SegmentCache:
    """LRU by the segments' raw (uncompressed) size, at most ``max_bytes`` in all."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[tuple[str, str], tuple[list[Row], int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str, digest: str) -> list[Row] | None:
        with self._lock:
            found = self._items.get((name, digest))
            if found is None:
                self.misses += 1
                return None
            self._items.move_to_end((name, digest))
            self.hits += 1
            return found[0]

    def put(self, name: str, digest: str, entries: list[Row], size: int) -> None:
        if size > self.max_bytes:
            return  # one huge segment would evict everything else
        with self._lock:
            key = (name, digest)
            if key in self._items:
                return
            self._items[key] = (entries, size)
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self.bytes -= dropped

    def __len__(self) -> int:
        return len(self._items)


SHARED = SegmentCache()
"""The process's cache; readers and replay use it unless given their own."""
