"""Reads of long-term memory: episodes, knowledge, skills, patterns, search, context.

Mixed into :class:`~memstream.projections.reader.AsyncReader` (AsyncMemoryReads) and the blocking
``Reader`` (MemoryReads); methods annotate ``self`` with the runner protocols of :mod:`.base`.
"""

from __future__ import annotations


class AsyncMemoryReads:
    pass


class MemoryReads:
    pass
