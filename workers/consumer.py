"""One partition's apply lane: batches of one (partition, version), applied in order.

The worker's :class:`~memstream.workers.feeds.FeedReader` reads every partition feed of a
version with one blocking XREADGROUP and hands each lane its entries. A lane fetches the
log entries a batch points at, plans the writes (off the event loop when heavy), then
sends one ack-gated ``ms_apply`` call; the next batch is planned while that call runs, so
the worker's CPU and the server overlap, and applies stay one at a time, in order.

A lane also takes over entries idle too long in other consumers (XAUTOCLAIM; an entry
taken over too often is applied alone, to tell poison from bad luck: :mod:`.suspects`)
and, at start and after every Redis outage, re-reads its own pending entries (a read reply lost
in transit left them delivered to us but never seen; an ``ms_apply`` whose reply was lost
may or may not have run). Both go through the same gate, so nothing applies twice.
Every Redis call of a lane waits for the worker's shared ``limit`` (a semaphore), so the
connections a worker holds do not grow with the partition count.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import msgpack
import redis.asyncio

from memstream.producers import keys
from memstream.producers.codec import DecodeError
from memstream.producers.connection import sync_client
from memstream.producers.errors import MemstreamError
from memstream.producers.settings import Settings
from memstream.projections.base import ApplyContext
from memstream.projections.ops import apply_command

from .forget import forget_requested
from .metrics import Metrics
from .options import WorkerOptions
from .plan import FeedEntry, Outcome, Planner, Pointer, parse_pointer
from .resilience import Kind, RedisGate, classify, is_nogroup, sleep_or_stop
from .suspects import Suspects

if TYPE_CHECKING:
    from .feeds import FeedReader

log = logging.getLogger("memstream.worker")

Command = tuple[Any, ...]
Planned = tuple[Outcome, Command, float]
"""A planned batch: its outcome, the ``ms_apply`` call, and the CPU time planning took."""

Prepared = tuple[Outcome, Command, float]
"""A batch ready to apply: its outcome, the ``ms_apply`` call, and when it was read."""

INLINE_BUDGET_S = 0.005
"""A batch expected to plan faster than this runs on the event loop (see _run_plan)."""

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
        self._next_claim = 0.0
        self._recover_from: str | None = "0"
        self._outages = gate.outages
        self._failures = 0
        self._applying: asyncio.Task[None] | None = None
        self._cost_per_event: float | None = None
        """Running average of planning time per event (s); None until the first batch,
        which goes to a thread (its cost is unknown) and sets it."""
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
            self._recover_from = "0"
            await self.gate.wait_up()
        if self._recover_from is not None:
            entries = await self._recover()
        elif self.inbox:
            entries = self.inbox.popleft()
        else:
            entries = await self._claim()
        if not entries:
            if self._recover_from is None and not self.inbox:
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
        timeout = max(0.0, self._next_claim - time.monotonic())
        if stop.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout)

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
            self._recover_from = "0"
            return
        log.error(
            "partition %s (v%s): batch failed, its entries stay pending and will be "
            "redelivered: %s: %s", self.p, self.version, type(error).__name__, error,
        )  # fmt: skip
        await sleep_or_stop(self.gate.missing.backoff.delay(self._failures), stop)
        # Retry our own pending entries now rather than after --claim-idle-ms: a driver
        # error during a Cluster slot move passes; an entry that keeps failing goes past
        # --max-deliveries and is then tried alone, then dead-lettered (.suspects).
        self._recover_from = "0"

    async def _call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kw: Any) -> T:
        async with self.limit:
            return await fn(*args, **kw)

    async def _recover(self) -> list[FeedEntry]:
        """One page of this consumer's own pending entries (XREADGROUP from an id)."""
        start = self._recover_from or "0"
        reply: Any = await self._call(
            self.client.xreadgroup, self.group, self.options.consumer, {self.feed: start},
            count=self.options.batch,
        )  # fmt: skip
        rows = reply[0][1] if reply else []
        if not rows:
            self._recover_from = None
            return []
        self._recover_from = _text(rows[-1][0])
        gone = [i for i, f in rows if f is None]
        if gone:  # trimmed from the feed while pending: nothing to apply, just ack
            await self._call(self.client.xack, self.feed, self.group, *gone)
        entries = await self._with_counts([(i, f) for i, f in rows if f is not None])
        self.metrics.recovered += len(entries)
        return entries

    async def _claim(self) -> list[FeedEntry]:
        now = time.monotonic()
        if now < self._next_claim:
            return []
        self._next_claim = now + self.options.claim_idle_ms / 2000
        reply: Any = await self._call(
            self.client.xautoclaim, self.feed, self.group, self.options.consumer,
            min_idle_time=self.options.claim_idle_ms, start_id="0-0", count=self.options.batch,
        )  # fmt: skip
        claimed = [(i, f) for i, f in reply[1] if f is not None]
        if len(reply) > 2 and reply[2]:
            # Entries trimmed from the feed while pending: nothing to apply, just ack.
            await self._call(self.client.xack, self.feed, self.group, *reply[2])
        if not claimed:
            return []
        self._next_claim = 0.0  # there may be more: look again right away
        self.metrics.claimed += len(claimed)
        return await self._with_counts(claimed)

    async def _with_counts(self, rows: Sequence[tuple[Any, Any]]) -> list[FeedEntry]:
        """Entries read again (claimed or re-read) with their delivery counts."""
        if not rows:
            return []
        ids = [_text(i) for i, _ in rows]
        pending: Any = await self._call(
            self.client.xpending_range, self.feed, self.group, min=ids[0], max=ids[-1],
            count=len(ids) * 2, consumername=self.options.consumer,
        )  # fmt: skip
        counts = {_text(row["message_id"]): int(row["times_delivered"]) for row in pending}
        return [FeedEntry(i, f, counts.get(i, 2)) for i, (_, f) in zip(ids, rows, strict=True)]

    async def prepare(self, entries: Sequence[FeedEntry]) -> Prepared:
        """Fetch a batch's log entries and plan its ``ms_apply`` call."""
        started = time.perf_counter()
        pointers: dict[str, Pointer | DecodeError] = {}
        for entry in entries:
            try:
                pointers[entry.feed_id] = parse_pointer(self.p, self.partitions, entry.fields)
            except DecodeError as e:
                pointers[entry.feed_id] = e
        wanted = [(fid, p) for fid, p in pointers.items() if isinstance(p, Pointer)]
        rows: Any = []
        if wanted:
            rows = await self._call(
                self.client.execute_command, *fetch_command(self.p, [p for _, p in wanted])
            )
        ctx = ApplyContext(self.pk, self.settings, int(time.time() * 1000))
        job = functools.partial(self._plan, ctx, entries, pointers, wanted, rows)
        outcome, command = await self._run_plan(job, len(entries))
        return outcome, command, started

    async def finish(self, batch: Prepared) -> None:
        """Send a planned batch's ``ms_apply`` call, then run the forgets it filed."""
        outcome, command, started = batch
        sent = time.perf_counter()
        applied = await self._call(self.client.execute_command, *command)
        self.gate.missing.recovered()
        done = time.perf_counter()
        self.metrics.record(outcome, int(applied), done - started, apply_s=done - sent)
        if outcome.forgets:
            await asyncio.to_thread(self._run_forgets)

    def _run_forgets(self) -> None:
        """Run the forgets that ``owner.forgotten`` filed. A failure (a replay holds the
        lock, say) leaves the request filed for the next one or ``forget --requested``."""
        client = sync_client(self.settings)
        try:
            for done in forget_requested(client, self.settings):
                log.info("forgot owner sha256=%s (%s entries)", done.owner_hash, done.entries)
        except MemstreamError as e:
            log.warning("filed forget not run yet: %s", e)
        finally:
            client.close()

    async def _run_plan(self, job: Callable[[], Planned], n: int) -> tuple[Outcome, Command]:
        """Plan a batch: on the loop when it is expected to be quick, else in a thread.

        A thread keeps heavy projections from stalling the loop, but under the GIL the
        hop costs cheap batches about a fifth of the throughput, so a batch whose
        expected time (this consumer's running cost per event) is under
        :data:`INLINE_BUDGET_S` runs inline: a stall no longer than one read's parse.
        """
        cost = self._cost_per_event
        inline = cost is not None and cost * n < INLINE_BUDGET_S
        outcome, command, cpu = job() if inline else await asyncio.to_thread(job)
        self.metrics.observe_plan(cpu)
        sample = cpu / max(n, 1)
        # The first sample is taken as is: averaged in from a high guess, it took dozens
        # of batches to come down, and every one of them paid for the thread hop.
        self._cost_per_event = sample if cost is None else cost + (sample - cost) * 0.2
        return outcome, command

    def _plan(
        self,
        ctx: ApplyContext,
        entries: Sequence[FeedEntry],
        pointers: dict[str, Pointer | DecodeError],
        wanted: Sequence[tuple[str, Pointer]],
        rows: Sequence[Sequence[bytes] | None],
    ) -> Planned:
        """Plan and encode the call; also returns the CPU time it took (thread CPU time,
        so waiting for the GIL in a crowded process does not count as cost)."""
        t0 = time.thread_time()
        logs = {
            fid: (_pairs(row) if row else None) for (fid, _), row in zip(wanted, rows, strict=True)
        }
        outcome = self.planner.plan(ctx, self.group, entries, pointers, logs)
        command = apply_command(
            self.feed, self.group, outcome.entries, fences=self.fences, owners=outcome.owners
        )
        return outcome, command, time.thread_time() - t0


def fetch_command(p: int, pointers: Sequence[Pointer]) -> tuple[Any, ...]:
    """``FCALL_RO ms_fetch``: every log entry of a batch in one round trip."""
    logs: dict[str, int] = {}
    args: list[Any] = []
    for pointer in pointers:
        key = keys.log(p, pointer.owner)
        args += [logs.setdefault(key, len(logs) + 1), pointer.log_id]
    return ("FCALL_RO", "ms_fetch", len(logs), *logs, msgpack.packb(args))


def _pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    # Pairing one iterator with itself skips two slice copies; strict still rejects an
    # odd-length list, which Redis never sends for a stream entry.
    it = iter(flat)
    return dict(zip(it, it, strict=True))


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
