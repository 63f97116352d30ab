"""Poison entries, told apart from entries that were merely taken over.

A feed entry's delivery count grows each time a consumer takes it over (XAUTOCLAIM) or
re-reads it, whatever the reason. Dead-lettering an entry as soon as that count passes
``--max-deliveries`` punished valid entries: under a kill storm, or when a starved worker
sat on its batch past ``--claim-idle-ms`` and another took it over, thousands of valid
entries were dead-lettered (5,065 of a million in the long chaos run).

Bad *data* never needs the count: the planner dead-letters it on the first delivery,
with its reason. The count only matters for an entry that kills the worker applying it
(a crash, an out-of-memory kill) and so never gets a reason. So an entry past the limit
is applied **alone**, under a marker ``consumer|deaths`` in :func:`keys.suspects`:

- it applies: the marker goes, the entry was fine (the ack gate keeps it exactly once);
- the worker dies meanwhile (or the apply raises): the next consumer to get the entry
  finds the marker of a consumer whose heartbeat has expired (or its own), counts one
  failure and tries alone again;
  at :data:`POISON_DEATHS` failures it is dead-lettered, alone, with that reason;
- the marker's consumer is alive (still applying it, only slow): the entry is left
  pending for now and comes back later, so a slow worker is never taken for a dead one.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio

from memstream.producers import keys
from memstream.producers.errors import InvalidIdError

from .plan import FeedEntry

POISON_DEATHS = 2
"""Deaths while applying an entry alone before it is dead-lettered: one could be a
coincidence (a kill that happened to land then), two in a row with it alone are not."""

Call = Callable[..., Awaitable[Any]]
ApplyAlone = Callable[[FeedEntry], Awaitable[None]]


class Suspects:
    """Screens a lane's batches; ``call`` runs one Redis call under the lane's limit."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        call: Call,
        *,
        partition: int,
        version: int,
        consumer: str,
        max_deliveries: int,
    ) -> None:
        self.client = client
        self.call = call
        self.key = keys.suspects(partition, version)
        self.consumer = consumer
        self.max_deliveries = max_deliveries

    async def screen(
        self, entries: Sequence[FeedEntry], apply_alone: ApplyAlone
    ) -> list[FeedEntry]:
        """The entries to apply as a batch: those within the limit, plus any found to be
        poison (with their reason set). Every other entry past the limit is applied alone
        here, through ``apply_alone``, or left pending while its marker's consumer lives."""
        batch: list[FeedEntry] = []
        for entry in entries:
            if entry.deliveries <= self.max_deliveries:
                batch.append(entry)
                continue
            deaths = await self._deaths(entry)
            if deaths is None:
                continue  # another live consumer is applying it alone right now
            if deaths >= POISON_DEATHS:
                await self.call(self.client.hdel, self.key, entry.feed_id)
                reason = (
                    f"delivered {entry.deliveries} times (max {self.max_deliveries}); "
                    f"applying it alone failed {deaths} times (the worker died or the "
                    "apply raised)"
                )
                batch.append(dataclasses.replace(entry, poison=reason))
                continue
            await self.call(self.client.hset, self.key, entry.feed_id,
                            f"{self.consumer}|{deaths}")  # fmt: skip
            await apply_alone(entry)
            await self.call(self.client.hdel, self.key, entry.feed_id)
        return batch

    async def _deaths(self, entry: FeedEntry) -> int | None:
        """Deaths so far while applying ``entry`` alone, this delivery's included when
        its marker's consumer is gone; None when that consumer is still alive."""
        raw = await self.call(self.client.hget, self.key, entry.feed_id)
        if raw is None:
            return 0
        who, _, count = raw.decode("utf-8", "replace").rpartition("|")
        deaths = int(count) if count.isdigit() else 0
        if who != self.consumer and await self._alive(who):
            return None
        # Gone, or it was us (an apply alone that raised): one more failed attempt.
        return deaths + 1

    async def _alive(self, consumer: str) -> bool:
        with contextlib.suppress(InvalidIdError):
            return bool(await self.call(self.client.exists, keys.heartbeat(consumer)))
        return False
