"""One consumer loop: a (partition, version) pair read through the version's group.

Read a batch (XREADGROUP, BLOCK), fetch the log entries it points at, plan the writes
off the event loop, then send one ack-gated ``ms_apply`` call. Entries idle too long
in other consumers are reclaimed with XAUTOCLAIM and go through the same path.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgpack
import redis.asyncio
from redis.exceptions import ResponseError

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

log = logging.getLogger("memstream.worker")

Command = tuple[Any, ...]
Planned = tuple[Outcome, Command, float]
"""A planned batch: its outcome, the ``ms_apply`` call, and the CPU time planning took."""

Prepared = tuple[Outcome, Command, float]
"""A batch ready to apply: its outcome, the ``ms_apply`` call, and when it was read."""

INLINE_BUDGET_S = 0.005
"""A batch expected to plan faster than this runs on the event loop (see _run_plan)."""


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


async def _settled(task: asyncio.Task[None]) -> None:
    """Wait for an apply in flight; a group destroyed meanwhile (replay flipped, NOGROUP)
    ends it quietly, as it ends the loop."""
    try:
        await task
    except ResponseError as e:
        if "NOGROUP" not in str(e):
            raise


class PartitionConsumer:
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
        self.client = client
        self.settings = settings
        self.planner = planner
        self.options = options
        self.metrics = metrics
        self.p = partition
        self.partitions = partitions
        self.version = version
        self.feed = keys.feed(partition)
        self.group = keys.group(version)
        self.pk = keys.Projection(partition, version)
        self.fences = keys.fences(partition, version)
        self._next_claim = 0.0
        self._cost_per_event: float | None = None
        """Running average of planning time per event (s); None until the first batch,
        which goes to a thread (its cost is unknown) and sets it."""

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until ``stop`` is set; the batches in hand are always finished first.

        The next batch is read, fetched and planned while the previous one's ``ms_apply``
        runs: the worker's CPU and the server's then overlap even when few partitions
        have work. Applies stay one at a time per partition, in order.
        """
        applying: asyncio.Task[None] | None = None
        try:
            while not stop.is_set():
                entries = await self._claim() or await self._read()
                if not entries:
                    continue
                batch = await self.prepare(entries)
                if applying is not None:
                    await applying
                applying = asyncio.create_task(self.finish(batch))
        except ResponseError as e:
            if "NOGROUP" not in str(e):
                raise
        finally:
            if applying is not None:
                await _settled(applying)

    async def _read(self) -> list[FeedEntry]:
        reply: Any = await self.client.xreadgroup(
            self.group,
            self.options.consumer,
            {self.feed: ">"},
            count=self.options.batch,
            block=self.options.block_ms,
        )
        if not reply:
            return []
        return [FeedEntry(_text(i), f) for i, f in reply[0][1] if f is not None]

    async def _claim(self) -> list[FeedEntry]:
        now = time.monotonic()
        if now < self._next_claim:
            return []
        self._next_claim = now + self.options.claim_idle_ms / 2000
        reply: Any = await self.client.xautoclaim(
            self.feed,
            self.group,
            self.options.consumer,
            min_idle_time=self.options.claim_idle_ms,
            start_id="0-0",
            count=self.options.batch,
        )
        claimed = [(i, f) for i, f in reply[1] if f is not None]
        if len(reply) > 2 and reply[2]:
            # Entries trimmed from the feed while pending: nothing to apply, just ack.
            await self.client.xack(self.feed, self.group, *reply[2])
        if not claimed:
            return []
        self._next_claim = 0.0  # there may be more: look again right away
        ids = [_text(i) for i, _ in claimed]
        pending: Any = await self.client.xpending_range(
            self.feed, self.group, min=ids[0], max=ids[-1], count=len(ids) * 2,
            consumername=self.options.consumer,
        )  # fmt: skip
        counts = {_text(row["message_id"]): int(row["times_delivered"]) for row in pending}
        self.metrics.claimed += len(ids)
        return [FeedEntry(i, f, counts.get(i, 2)) for i, (_, f) in zip(ids, claimed, strict=True)]

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
            rows = await self.client.execute_command(  # type: ignore[no-untyped-call]
                *fetch_command(self.p, [p for _, p in wanted])
            )
        ctx = ApplyContext(self.pk, self.settings, int(time.time() * 1000))
        job = functools.partial(self._plan, ctx, entries, pointers, wanted, rows)
        outcome, command = await self._run_plan(job, len(entries))
        return outcome, command, started

    async def finish(self, batch: Prepared) -> None:
        """Send a planned batch's ``ms_apply`` call, then run the forgets it filed."""
        outcome, command, started = batch
        applied = await self.client.execute_command(*command)  # type: ignore[no-untyped-call]
        self.metrics.record(outcome, int(applied), time.perf_counter() - started)
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
