"""``Worker``: serves every partition of the active version (and of a version being
built by replay). Per version, one reader covers every partition feed and hands each
partition's batches to its apply lane (:mod:`memstream.workers.feeds`), so connections
stay bounded whatever the partition count. Scale by starting more processes: they all
join the same groups.

The worker never dies of Redis: every task that meets a transient error reports it to
one shared :class:`~memstream.workers.resilience.RedisGate` (one warning per outage,
one probe with backoff) and resumes when Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio

from memstream.producers import keys
from memstream.producers.connection import async_client
from memstream.producers.deployment import Deployment
from memstream.producers.driver import address
from memstream.producers.errors import NotInitialisedError
from memstream.producers.settings import Settings
from memstream.projections.base import Projection
from memstream.projections.registry import with_extra

from . import heartbeat
from .feeds import VersionFeeds
from .metrics import Metrics
from .options import WorkerOptions
from .plan import Planner
from .resilience import Episode, Kind, RedisGate, classify, sleep_or_stop
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
        keys.check_id(options.consumer, "consumer")
        self.client = client
        self.settings = settings
        self.options = options
        self.planner = Planner(
            projections if projections is not None else with_extra(options.projections),
            settings,
            options.max_deliveries,
        )
        self.metrics = Metrics()
        self.stop = asyncio.Event()
        self.where = address(settings)
        self._feeds: dict[tuple[int, int], tuple[VersionFeeds, asyncio.Task[None]]] = {}
        self._limit = asyncio.Semaphore(options.connections)
        self._deployment_now: Deployment | None = None
        self._started_ms = int(time.time() * 1000)
        self._meta = Episode(
            log, f"reading ms:meta from Redis at {self.where}",
            hint="serving the partitions and versions last read",
        )  # fmt: skip

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

    async def _start(self, gate: RedisGate) -> Deployment | None:
        """The deployment, once Redis answers; None if stopped first. A server that
        answers but was never initialised fails the start: that is a set-up mistake."""
        while not self.stop.is_set():
            try:
                deployment = await self._deployment()
                await self._check_functions()
                return deployment
            except Exception as e:
                if classify(e) is not Kind.TRANSIENT:
                    raise
                gate.report(e)
                await gate.wait_up()
        return None

    def _sync_feeds(self, deployment: Deployment, gate: RedisGate) -> None:
        self._deployment_now = deployment
        wanted = {(deployment.version, deployment.partitions)}
        if deployment.next_version is not None:
            wanted.add((deployment.next_version, deployment.partitions))
        for key, (feeds, task) in list(self._feeds.items()):
            if task.done():
                del self._feeds[key]
            elif key not in wanted:
                feeds.close()  # a retired version: its lanes finish and end
        for version, partitions in sorted(wanted):
            if (version, partitions) not in self._feeds:
                feeds = VersionFeeds(
                    self.client, self.settings, self.planner, self.options, self.metrics,
                    partitions=partitions, version=version, gate=gate, limit=self._limit,
                )  # fmt: skip
                task = asyncio.create_task(feeds.run(self.stop))
                self._feeds[(version, partitions)] = (feeds, task)

    async def run(self) -> None:
        """Serve until :meth:`request_stop`; in-flight batches finish before returning."""
        probe = async_client(self.settings.model_copy(update={"retries": 0, "max_connections": 1}))
        gate = RedisGate(probe.ping, log, self.where, stop=self.stop)
        background: list[asyncio.Task[None]] = []
        try:
            deployment = await self._start(gate)
            if deployment is None:
                return
            log.info(
                "worker %s started: partitions=%d version=v%d%s redis=%s batch=%d "
                "connections<=%d", self.options.consumer, deployment.partitions,
                deployment.version,
                f" building=v{deployment.next_version}" if deployment.next_version else "",
                self.where, self.options.batch, self.options.connections,
            )  # fmt: skip
            self._sync_feeds(deployment, gate)
            background = [
                asyncio.create_task(self._heartbeats()),
                asyncio.create_task(self._trims(gate)),
            ]
            await self._supervise(gate)
        finally:
            self.stop.set()
            for feeds, _ in self._feeds.values():
                feeds.close()
            await asyncio.gather(*(t for _, t in self._feeds.values()), return_exceptions=True)
            await asyncio.gather(*background, return_exceptions=True)
            await self._last_words(gate)
            await gate.aclose()
            await probe.aclose()
        log.info("worker %s stopped: %s", self.options.consumer, self.metrics.summary())

    async def _supervise(self, gate: RedisGate) -> None:
        """Follow ``ms:meta`` (replay flips, next versions) until stopped."""
        while not self.stop.is_set():
            await sleep_or_stop(self.options.meta_every_s, self.stop)
            if self.stop.is_set():
                break
            try:
                deployment = await self._deployment()
            except Exception as e:
                kind = classify(e)
                if kind is Kind.TRANSIENT:
                    gate.report(e)
                    await gate.wait_up()
                elif kind is Kind.NOT_READY:
                    # Keep serving what we know; lost data is reported once, by the
                    # gate's episode that the lanes share.
                    gate.missing.failed(e)
                else:
                    self._meta.failed(e)
                continue
            self._meta.recovered()
            self._sync_feeds(deployment, gate)

    async def _trims(self, gate: RedisGate) -> None:
        """Housekeeping must never take the worker down: on error, log and try later."""
        trouble = Episode(log, "trimming the feeds")
        while not self.stop.is_set():
            deployment = self._deployment_now
            if deployment is not None and not gate.down:
                try:
                    for p in range(deployment.partitions):
                        if self.stop.is_set():
                            break
                        await trim_feed(self.client, p)
                    trouble.recovered()
                except Exception as e:
                    kind = classify(e)
                    if kind is Kind.TRANSIENT:
                        gate.report(e)
                    elif kind is Kind.NOT_READY:  # lost data: the lanes report it once
                        gate.missing.failed(e)
                    else:
                        trouble.failed(e)
            await sleep_or_stop(self.options.trim_every_s, self.stop)

    async def _heartbeats(self) -> None:
        """Renew this worker's heartbeat; a missed beat only costs liveness, so errors
        are left to the gate (which the lanes feed) and logged once here."""
        trouble = Episode(log, "writing the heartbeat")
        while not self.stop.is_set():
            deployment = self._deployment_now
            if deployment is not None:
                versions = sorted({v for v, _ in self._feeds})
                data = heartbeat.record(
                    self.options.consumer, role="worker", versions=versions,
                    partitions=deployment.partitions, started_ms=self._started_ms,
                    applied=self.metrics.applied,
                )  # fmt: skip
                try:
                    await heartbeat.beat(self.client, data)
                    trouble.recovered()
                except Exception as e:
                    if classify(e) is not Kind.TRANSIENT:
                        trouble.failed(e)
            await sleep_or_stop(heartbeat.EVERY_S, self.stop)

    async def _last_words(self, gate: RedisGate) -> None:
        """On the way out: trim once more (short-lived workers keep the feeds small) and
        drop the heartbeat. Skipped while Redis is away: nothing depends on them."""
        deployment = self._deployment_now
        if deployment is None or gate.down:
            return
        with contextlib.suppress(Exception):
            for p in range(deployment.partitions):
                await trim_feed(self.client, p)
        with contextlib.suppress(Exception):
            await heartbeat.clear(self.client, self.options.consumer)

    def request_stop(self) -> None:
        self.stop.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)


async def serve(settings: Settings, options: WorkerOptions) -> Metrics:
    worker = Worker.from_settings(settings, options)
    if options.metrics_port is not None:
        from memstream.producers.connection import sync_client

        from .metrics_http import serve_worker_metrics

        serve_worker_metrics(options.metrics_port, worker.metrics, sync_client(settings))
    worker.install_signal_handlers()
    try:
        await worker.run()
    finally:
        await worker.client.aclose()
    return worker.metrics
