"""Change subscriptions and the notification-invalidated read cache.

Mixed into :class:`~memstream.projections.reader.AsyncReader` (AsyncLiveReads) and the blocking
``Reader`` (LiveReads); methods annotate ``self`` with the runner protocols of :mod:`.base`.
"""

from __future__ import annotations


class AsyncLiveReads:
    pass


class LiveReads:
    pass
