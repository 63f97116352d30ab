"""One batch of a lane, from feed entries to writes: fetch, plan, apply.

:meth:`Batches.prepare` fetches every log entry the batch points at in one read-only
``ms_fetch`` call and plans the ``ms_apply`` call; :meth:`Batches.finish` sends it (the
XACK gate: nothing applies twice) and runs the forgets the batch filed. Planning is the
worker's CPU part: it runs on the event loop, in slices of at most
:data:`INLINE_BUDGET_S` with the loop served between them, unless a single event is
expected to take longer than that (a heavy projection), which goes to a thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

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
from .plan import FeedEntry, Fields, Outcome, Planner, Pointer, parse_pointer

log = logging.getLogger("memstream.worker")

Command = tuple[Any, ...]
Prepared = tuple[Outcome, Command, float]
"""A batch ready to apply: its outcome, the ``ms_apply`` call, and when it was read."""
Caller = Callable[..., Awaitable[Any]]
"""The lane's way to run a Redis call (it waits for the worker's shared limit)."""

INLINE_BUDGET_S = 0.005
"""The longest the planning may hold the event loop at a stretch (see Batches._run_plan)."""


class Batches:
    """Fetch, plan and apply the batches of one (partition, version)."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        settings: Settings,
        planner: Planner,
        metrics: Metrics,
        call: Caller,
        *,
        partition: int,
        partitions: int,
        version: int,
    ) -> None:
        self.client = client
        self.settings = settings
        self.planner = planner
        self.metrics = metrics
        self.call = call
        self.p = partition
        self.partitions = partitions
        self.feed = keys.feed(partition)
        self.group = keys.group(version)
        self.pk = keys.Projection(partition, version)
        self.fences = keys.fences(partition, version)
        self.cost_per_event: float | None = None
        """Running average of planning CPU per event (s); None until the first batch,
        which goes to a thread (its cost is unknown) and sets it."""

    async def prepare(self, entries: Sequence[FeedEntry]) -> Prepared:
        """Fetch the log entries of ``entries`` and plan their ``ms_apply`` call."""
        started = time.perf_counter()
        pointers: dict[str, Pointer | DecodeError] = {}
        wanted: list[tuple[str, Pointer]] = []
        for entry in entries:
            try:
                pointer = parse_pointer(self.p, self.partitions, entry.fields)
            except DecodeError as e:
                pointers[entry.feed_id] = e
                continue
            pointers[entry.feed_id] = pointer
            wanted.append((entry.feed_id, pointer))
        rows: Any = []
        if wanted:
            rows = await self.call(
                self.client.execute_command, *fetch_command(self.p, [p for _, p in wanted])
            )
        logs = {
            fid: (_pairs(row) if row else None) for (fid, _), row in zip(wanted, rows, strict=True)
        }
        ctx = ApplyContext(self.pk, self.settings, int(time.time() * 1000))
        outcome = await self._run_plan(ctx, entries, pointers, logs)
        command = apply_command(
            self.feed, self.group, outcome.entries, fences=self.fences, owners=outcome.owners
        )
        return outcome, command, started

    async def finish(self, batch: Prepared, recovered: Callable[[], None]) -> None:
        """Send a planned ``batch``'s ``ms_apply`` call (``recovered`` is called once it
        succeeds), then run the forgets that it filed."""
        outcome, command, started = batch
        sent = time.perf_counter()
        applied = await self.call(self.client.execute_command, *command)
        recovered()
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

    async def _run_plan(
        self,
        ctx: ApplyContext,
        entries: Sequence[FeedEntry],
        pointers: dict[str, Pointer | DecodeError],
        logs: Mapping[str, Fields | None],
    ) -> Outcome:
        """Plan a batch on the loop, in slices of about :data:`INLINE_BUDGET_S` each.

        Under the GIL a thread gives no parallelism, and the hop cost cheap batches about
        a fifth of the throughput; a whole batch planned at once held the loop for as
        long as it took, and on a loaded machine (planning two to three times slower)
        every 200-entry batch went over the budget and took the hop. So the batch is cut
        into slices the running cost per event says fit the budget, and the loop serves
        its other lanes between them. Only when one event is expected to take longer
        than the budget (a heavy projection) does the batch go to a thread, as does the
        first batch, whose cost is not known yet.
        """
        if self.planner.embeds(ctx.settings, logs):
            # Embedding a batch is CPU-heavy native work: in a thread, off the loop, once
            # for the whole batch rather than once per slice.
            await asyncio.to_thread(self.planner.prepare, ctx.settings, pointers, logs)
        cost = self.cost_per_event
        out = Outcome()
        if cost is None or cost > INLINE_BUDGET_S:
            cpu = await asyncio.to_thread(self._plan_slice, ctx, entries, pointers, logs, out)
        else:
            cpu = 0.0
            step = max(1, int(INLINE_BUDGET_S / max(cost, 1e-9)))
            for start in range(0, len(entries), step):
                if start:
                    await asyncio.sleep(0)  # the other lanes' replies, then on
                cpu += self._plan_slice(
                    ctx, entries[start : start + step], pointers, logs, out, clock=time.perf_counter
                )
        self.metrics.observe_plan(cpu)
        sample = cpu / max(len(entries), 1)
        # The first sample is taken as is: averaged in from a high guess, it took dozens
        # of batches to come down, and every one of them paid for the thread hop.
        self.cost_per_event = sample if cost is None else cost + (sample - cost) * 0.2
        return out

    def _plan_slice(
        self,
        ctx: ApplyContext,
        entries: Sequence[FeedEntry],
        pointers: dict[str, Pointer | DecodeError],
        logs: Mapping[str, Fields | None],
        out: Outcome,
        *,
        clock: Callable[[], float] = time.thread_time,
    ) -> float:
        """Plan ``entries`` into ``out``; returns the time it took by ``clock``: in a
        thread, thread CPU time, so waiting for the GIL in a crowded process does not
        count as cost; on the loop, which holds the GIL throughout, the cheaper wall
        clock (thread CPU time is a system call, read twice per batch)."""
        t0 = clock()
        self.planner.plan(ctx, self.group, entries, pointers, logs, out=out)
        return clock() - t0


def fetch_command(p: int, pointers: Sequence[Pointer]) -> tuple[Any, ...]:
    """``FCALL_RO ms_fetch``: every log entry of a batch (``pointers`` of partition ``p``)
    in one round trip."""
    index: dict[str, int] = {}  # owner -> its log's KEYS index; a batch has few owners
    logs: list[str] = []
    args: list[Any] = []
    for pointer in pointers:
        i = index.get(pointer.owner)
        if i is None:
            logs.append(keys.log(p, pointer.owner))
            i = index[pointer.owner] = len(logs)
        args += (i, pointer.log_id)
    return ("FCALL_RO", "ms_fetch", len(logs), *logs, msgpack.packb(args))


def _pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    # Pairing one iterator with itself skips two slice copies; strict still rejects an
    # odd-length list, which Redis never sends for a stream entry.
    it = iter(flat)
    return dict(zip(it, it, strict=True))
