"""Reads of the world model and exploration patterns.

Mixed into :class:`~memstream.projections.reader.AsyncReader` (AsyncWorldReads) and the blocking
``Reader`` (WorldReads); methods annotate ``self`` with the runner protocols of :mod:`.base`.
"""

from __future__ import annotations


class AsyncWorldReads:
    pass


class WorldReads:
    pass
