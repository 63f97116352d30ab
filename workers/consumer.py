"""One partition's apply lane: batches of one (partition, version), applied in order.

The worker's :class:`~memstream.workers.feeds.FeedReader` reads every partition feed of a
version with one blocking XREADGROUP and hands each lane its entries. A lane fetches the
log entries a batch points at and plans the writes, then sends one ack-gated
``ms_apply`` call (:mod:`.batch`); the next batch is planned while that call runs, so the
worker's CPU and the server overlap, and applies stay one at a time, in order.

A lane also takes over entries idle too long in other consumers and, at start and after
every Redis outage, re-reads its own pending entries (:mod:`.rereads`); an entry taken
over too often is applied alone, to tell poison from bad luck (:mod:`.suspects`). All go
through the same gate, so nothing applies twice. Every Redis call of a lane waits for
the worker's shared ``limit`` (a semaphore), so the connections a worker holds do not
grow with the partition count.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import redis.asyncio

from memstream.producers import keys
from memstream.producers.settings import Settings

from .batch import Batches, Prepared
from .metrics import Metrics
from .options import WorkerOptions
from .plan import FeedEntry, Planner
from .rereads import Rereads
from .resilience import Kind, RedisGate, classify, is_nogroup, sleep_or_stop
from .suspects import Suspects

if TYPE_CHECKING:
    from .feeds import FeedReader

log = logging.getLogger("memstream.worker")

T = TypeVar("T")


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


async def settle(task: asyncio.Task[None] | None) -> BaseException | None:
    """Wait for a task and return its exception instead of raising it, so no task's
    exception is ever left unretrieved."""
    if task is None:
        return None
    try:
        await task
    except asyncio.CancelledError:
        raise
    except Exception as e:
        return e
    return None


class PartitionLane:
    def __init__(
        self,
        client: redis.asyncio.Redis,
        settings: Settings,
        planner: Planner,
        options: WorkerOptions,
        metrics: Metrics,
        *,
        partition: int,
        partitions: int,
        version: int,
        gate: RedisGate,
        limit: asyncio.Semaphore,
    ) -> None:
        self.client = client
        self.settings = settings
        self.planner = planner
        self.options = options
        self.metrics = metrics
        self.p = partition
        self.partitions = partitions
        self.version = version
        self.gate = gate
        self.limit = limit
        self.feed = keys.feed(partition)
        self.group = keys.group(version)
        self.pk = keys.Projection(partition, version)
        self.fences = keys.fences(partition, version)
        self.reader: FeedReader | None = None
        self.inbox: collections.deque[list[FeedEntry]] = collections.deque()
        self.wake = asyncio.Event()
        self._outages = gate.outages
        self._failures = 0
        self._applying: asyncio.Task[None] | None = None
        self.batches = Batches(
            client, settings, planner, metrics, self._call,
            partition=partition, partitions=partitions, version=version,
        )  # fmt: skip
        self.rereads = Rereads(
            client, self._call, metrics, options, feed=self.feed, group=self.group
        )
        self.suspects = Suspects(
            client, self._call, partition=partition, version=version,
            consumer=options.consumer, max_deliveries=planner.max_deliveries,
        )  # fmt: skip

    def deliver(self, entries: list[FeedEntry]) -> None:
        """Called by the reader: a batch read for this lane (or [] just to wake it)."""
        if entries:
            self.inbox.append(entries)
        self.wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until ``stop`` is set; the apply in flight is always finished first.

        Errors never end the lane: a transient one (Redis gone, timeout, LOADING) waits
        for the worker's gate to see Redis back; the batches in hand are dropped and
        come back from the lane's own pending entries. Anything else is logged and the
        entries stay pending, to be reclaimed (and dead-lettered after too many tries).
        """
        try:
            while not stop.is_set():
                try:
                    await self._step(stop)
                    self._failures = 0
                except Exception as e:
                    await self._settle_applying()
                    await self._failed(e, stop)
        finally:
            if self.reader is not None:
                self.reader.withdraw(self)
            task, self._applying = self._applying, None
            failed = await settle(task)
            if failed is not None:
                log.warning("partition %s (v%s): last apply failed: %s", self.p, self.version,
                            failed)  # fmt: skip

    async def _settle_applying(self) -> None:
        """Wait for the apply in flight; a transient failure of it opens an outage."""
        task, self._applying = self._applying, None
        failed = await settle(task)
        if failed is not None and classify(failed) is Kind.TRANSIENT:
            self.gate.report(failed)

    async def _step(self, stop: asyncio.Event) -> None:
        if self.gate.outages != self._outages:
            # An outage happened: finish what is in flight, then re-read our own pending
            # entries before anything new, so the partition's order is kept.
            self._outages = self.gate.outages
            await self._settle_applying()
            self.inbox.clear()
            self.rereads.recover_from = "0"
            await self.gate.wait_up()
        if self.rereads.recover_from is not None:
            entries = await self.rereads.recover()
        elif self.inbox:
            entries = self.inbox.popleft()
        else:
            entries = await self.rereads.claim()
        if not entries:
            if self.rereads.recover_from is None and not self.inbox:
                await self._wait(stop)
            return
        entries = await self.suspects.screen(entries, self._apply_alone)
        if not entries:
            return
        batch = await self.prepare(entries)
        if self._applying is not None:
            task, self._applying = self._applying, None
            await task
        self._applying = asyncio.create_task(self.finish(batch))

    async def _apply_alone(self, entry: FeedEntry) -> None:
        """One entry in its own ``ms_apply``, after the apply in flight (order kept)."""
        batch = await self.prepare([entry])
        if self._applying is not None:
            task, self._applying = self._applying, None
            await task
        await self.finish(batch)

    async def _wait(self, stop: asyncio.Event) -> None:
        """Ask the reader for entries; wake on delivery, stop, or when a claim is due."""
        self.wake.clear()
        if self.reader is not None:
            self.reader.want(self)
        timeout = max(0.0, self.rereads.next_claim - time.monotonic())
        if stop.is_set():
            return
        # asyncio.timeout, not wait_for: wait_for wraps the wait in a task of its own,
        # and at low rates (a batch or two per event) a lane waits once per batch.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.wake.wait()

    async def _failed(self, error: Exception, stop: asyncio.Event) -> None:
        self._failures += 1
        self.inbox.clear()
        kind = classify(error)
        if kind is Kind.TRANSIENT:
            self.gate.report(error)
            await self.gate.wait_up()
            return
        if kind is Kind.NOT_READY:
            # A retired group (replay) ends the lane through the worker; lost data is
            # reported once by the gate's `missing` episode. Never recreate the group.
            if not is_nogroup(error):
                await sleep_or_stop(self.gate.missing.failed(error), stop)
            else:
                await sleep_or_stop(self.gate.missing.backoff.delay(self._failures), stop)
            self.rereads.recover_from = "0"
            return
        log.error(
            "partition %s (v%s): batch failed, its entries stay pending and will be "
            "redelivered: %s: %s", self.p, self.version, type(error).__name__, error,
        )  # fmt: skip
        await sleep_or_stop(self.gate.missing.backoff.delay(self._failures), stop)
        # Retry our own pending entries now rather than after --claim-idle-ms: a driver
        # error during a Cluster slot move passes; an entry that keeps failing goes past
        # --max-deliveries and is then tried alone, then dead-lettered (.suspects).
        self.rereads.recover_from = "0"

    async def _call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kw: Any) -> T:
        async with self.limit:
            return await fn(*args, **kw)

    async def prepare(self, entries: Sequence[FeedEntry]) -> Prepared:
        """Fetch the log entries of ``entries`` and plan their ``ms_apply`` call."""
        return await self.batches.prepare(entries)

    async def finish(self, batch: Prepared) -> None:
        """Send a planned ``batch``'s ``ms_apply`` call, then run the forgets it filed."""
        await self.batches.finish(batch, self.gate.missing.recovered)


class PartitionConsumer(PartitionLane):
    """A lane driven by hand, reading its own feed (tests and tools, not the worker)."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        settings: Settings,
        planner: Planner,
        options: WorkerOptions,
        metrics: Metrics,
        *,
        partition: int,
        partitions: int,
        version: int,
    ) -> None:
        gate = RedisGate(client.ping, log, "Redis")
        super().__init__(
            client, settings, planner, options, metrics, partition=partition,
            partitions=partitions, version=version, gate=gate,
            limit=asyncio.Semaphore(options.connections),
        )  # fmt: skip

    async def _read(self) -> list[FeedEntry]:
        """One batch of new entries of this lane's feed (blocks up to ``block_ms``)."""
        reply: Any = await self.client.xreadgroup(
            self.group, self.options.consumer, {self.feed: ">"}, count=self.options.batch,
            block=self.options.block_ms,
        )  # fmt: skip
        return [FeedEntry(_text(i), f) for i, f in (reply[0][1] if reply else []) if f is not None]
