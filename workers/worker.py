"""``Worker``: serves every partition of the active version (and of a version being
built by replay), one consumer loop per (partition, version). Scale by starting more
processes: they all join the same groups."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Sequence
from typing import Any

import redis.asyncio

from memstream.producers import keys
from memstream.producers.connection import async_client
from memstream.producers.deployment import Deployment
from memstream.producers.errors import NotInitialisedError
from memstream.producers.settings import Settings
from memstream.projections.base import Projection
from memstream.projections.registry import default_projections

from .consumer import PartitionConsumer
from .metrics import Metrics
from .options import WorkerOptions
from .plan import Planner
from .trim import trim_feed

log = logging.getLogger("memstream.worker")

GC_GEN0_THRESHOLD = 10_000
"""Container allocations between young-generation collections (CPython's default: 700)."""

REQUIRED_LIBRARY = "memstream_fetch"
"""The newest function library workers call; its absence means an older ``init``."""


def tune_gc() -> None:
    """Garbage-collector settings for a worker process, called once after start-up.

    A worker allocates a few dozen short-lived containers per event, nearly all freed by
    reference counting, yet at the default threshold the cycle collector ran every few
    dozen events and kept rescanning the start-up objects (modules, validators).
    Freezing those and collecting the young generation less often cut about a tenth of
    the worker's CPU per event (docs/benchmarks.md).
    """
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])


class Worker:
    def __init__(
        self,
        client: redis.asyncio.Redis,
        settings: Settings,
        options: WorkerOptions,
        projections: Sequence[Projection] | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.options = options
        self.planner = Planner(
            projections if projections is not None else default_projections(),
            settings,
            options.max_deliveries,
        )
        self.metrics = Metrics()
        self.stop = asyncio.Event()
        self._loops: dict[tuple[int, int], asyncio.Task[None]] = {}

    @classmethod
    def from_settings(cls, settings: Settings, options: WorkerOptions) -> Worker:
        return cls(async_client(settings), settings, options)

    async def _deployment(self) -> Deployment:
        return Deployment.from_meta(await self.client.hgetall(keys.META))  # type: ignore[arg-type]

    async def _check_functions(self) -> None:
        """Fail at start, not on the first batch, when the server's functions predate
        this worker (``memstream init`` reloads them and keeps the data)."""
        found: Any = await self.client.function_list(library=REQUIRED_LIBRARY)
        if not found:
            raise NotInitialisedError(
                f"the server has no {REQUIRED_LIBRARY} functions: run `memstream init` "
                "to load this version's functions (data is kept)"
            )

    def _sync_loops(self, deployment: Deployment) -> None:
        wanted = {deployment.version}
        if deployment.next_version is not None:
            wanted.add(deployment.next_version)
        for (p, version), task in list(self._loops.items()):
            if task.done():
                del self._loops[(p, version)]
                if not task.cancelled() and task.exception() is not None:
                    log.error("consumer %s/v%s failed: %r", p, version, task.exception())
        for version in wanted:
            for p in range(deployment.partitions):
                if (p, version) not in self._loops:
                    consumer = PartitionConsumer(
                        self.client, self.settings, self.planner, self.options, self.metrics,
                        partition=p, partitions=deployment.partitions, version=version,
                    )  # fmt: skip
                    self._loops[(p, version)] = asyncio.create_task(consumer.run(self.stop))

    async def run(self) -> None:
        """Serve until :meth:`request_stop`; in-flight batches finish before returning."""
        deployment = await self._deployment()
        await self._check_functions()
        self._sync_loops(deployment)
        next_trim = 0.0
        loop = asyncio.get_running_loop()
        while not self.stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stop.wait(), self.options.meta_every_s)
            if self.stop.is_set():
                break
            deployment = await self._deployment()
            self._sync_loops(deployment)
            if loop.time() >= next_trim:
                next_trim = loop.time() + self.options.trim_every_s
                await self._trim(deployment)
        await asyncio.gather(*self._loops.values(), return_exceptions=True)
        # Once more on the way out, so even short-lived workers keep the feeds small.
        await self._trim(deployment)
        log.info("worker %s stopped: %s", self.options.consumer, self.metrics.summary())

    async def _trim(self, deployment: Deployment) -> None:
        """Housekeeping must never take the worker down: log and try again next time."""
        for p in range(deployment.partitions):
            try:
                await trim_feed(self.client, p)
            except Exception:
                log.exception("trimming the feed of partition %s failed", p)

    def request_stop(self) -> None:
        self.stop.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)


async def serve(settings: Settings, options: WorkerOptions) -> Metrics:
    worker = Worker.from_settings(settings, options)
    worker.install_signal_handlers()
    try:
        await worker.run()
    finally:
        await worker.client.aclose()
    return worker.metrics
