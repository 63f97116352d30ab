"""A lane's second look at entries already delivered: its own, and idle ones of others.

At start and after every Redis outage a lane re-reads its own pending entries (a read
reply lost in transit left them delivered to us but never seen; an ``ms_apply`` whose
reply was lost may or may not have run), page by page from id 0 (:meth:`Rereads.recover`).
Every ``claim_idle_ms / 2`` it takes over entries idle too long in other consumers
(XAUTOCLAIM, :meth:`Rereads.claim`). Both come back with their delivery counts, which
:mod:`.suspects` uses to tell poison from bad luck; both go through the same ack gate as
new entries, so nothing applies twice.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio

from .metrics import Metrics
from .options import WorkerOptions
from .plan import FeedEntry


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


class Rereads:
    """Re-reads and take-overs of one lane (its ``feed`` in ``group``)."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        call: Callable[..., Awaitable[Any]],
        metrics: Metrics,
        options: WorkerOptions,
        *,
        feed: str,
        group: str,
    ) -> None:
        self.client = client
        self.call = call
        self.metrics = metrics
        self.options = options
        self.feed = feed
        self.group = group
        self.next_claim = 0.0
        """When the next XAUTOCLAIM is due (time.monotonic())."""
        self.recover_from: str | None = "0"
        """The id to re-read our own pending entries from; None: nothing to re-read."""

    async def recover(self) -> list[FeedEntry]:
        """One page of this consumer's own pending entries (XREADGROUP from an id)."""
        start = self.recover_from or "0"
        reply: Any = await self.call(
            self.client.xreadgroup, self.group, self.options.consumer, {self.feed: start},
            count=self.options.batch,
        )  # fmt: skip
        rows = reply[0][1] if reply else []
        if not rows:
            self.recover_from = None
            return []
        self.recover_from = _text(rows[-1][0])
        gone = [i for i, f in rows if f is None]
        if gone:  # trimmed from the feed while pending: nothing to apply, just ack
            await self.call(self.client.xack, self.feed, self.group, *gone)
        entries = await self.with_counts([(i, f) for i, f in rows if f is not None])
        self.metrics.recovered += len(entries)
        return entries

    async def claim(self) -> list[FeedEntry]:
        now = time.monotonic()
        if now < self.next_claim:
            return []
        self.next_claim = now + self.options.claim_idle_ms / 2000
        reply: Any = await self.call(
            self.client.xautoclaim, self.feed, self.group, self.options.consumer,
            min_idle_time=self.options.claim_idle_ms, start_id="0-0", count=self.options.batch,
        )  # fmt: skip
        claimed = [(i, f) for i, f in reply[1] if f is not None]
        if len(reply) > 2 and reply[2]:
            # Entries trimmed from the feed while pending: nothing to apply, just ack.
            await self.call(self.client.xack, self.feed, self.group, *reply[2])
        if not claimed:
            return []
        self.next_claim = 0.0  # there may be more: look again right away
        self.metrics.claimed += len(claimed)
        return await self.with_counts(claimed)

    async def with_counts(self, rows: Sequence[tuple[Any, Any]]) -> list[FeedEntry]:
        """Entries read again (claimed or re-read) with their delivery counts."""
        if not rows:
            return []
        ids = [_text(i) for i, _ in rows]
        pending: Any = await self.call(
            self.client.xpending_range, self.feed, self.group, min=ids[0], max=ids[-1],
            count=len(ids) * 2, consumername=self.options.consumer,
        )  # fmt: skip
        counts = {_text(row["message_id"]): int(row["times_delivered"]) for row in pending}
        return [FeedEntry(i, f, counts.get(i, 2)) for i, (_, f) in zip(ids, rows, strict=True)]
