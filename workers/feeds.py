"""Reading every partition feed of a version with one connection, whatever the count.

One blocking ``XREADGROUP GROUP v<N> <consumer> COUNT c BLOCK ms STREAMS feed_a ... >``
covers every lane that is waiting for entries (:func:`read_feeds`; on a Cluster, where a
command names one slot's keys only, one pipelined call per feed, grouped by node). Each lane
gets its own entries and applies them in order; a lane that is still busy is left out
of the read, so entries are only taken when a lane can start on them soon, and other
worker processes get the rest.

A lane that becomes ready while the read is blocked must not wait out the block: the
reader sends ``CLIENT UNBLOCK <id>`` (from a pooled connection) and reads again with it
included. Where the ACL user may not run ``CLIENT UNBLOCK``, the reader falls back to
short blocks (:data:`FALLBACK_BLOCK_MS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import redis.asyncio
from redis.exceptions import NoPermissionError

from memstream.producers import keys
from memstream.producers.connection import async_client, is_cluster
from memstream.producers.settings import Settings

from .consumer import PartitionLane, settle
from .metrics import Metrics
from .options import WorkerOptions
from .plan import FeedEntry, Planner
from .resilience import Kind, RedisGate, classify, is_nogroup, sleep_or_stop

log = logging.getLogger("memstream.worker")

READ_BUDGET = 5000
"""Entries one read may return in all: COUNT per feed is this divided by the feeds read
(at least :data:`MIN_COUNT`, at most the batch size), so a backlog over 1,024
partitions is not pulled into memory at once, and other workers get their share."""
MIN_COUNT = 10
FALLBACK_BLOCK_MS = 20
UNBLOCK_RETRY_S = 0.002


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


async def read_feeds(
    client: redis.asyncio.Redis,
    group: str,
    consumer: str,
    feeds: Sequence[str],
    *,
    count: int,
    block_ms: int,
) -> dict[str, list[FeedEntry]]:
    """New entries of ``feeds`` for ``consumer`` of ``group``: feed -> entries.

    ``count`` bounds the entries per feed; ``block_ms`` how long to wait when none is new.
    On one node ``client`` is one connection and a single blocking XREADGROUP covers
    every feed. On a Cluster a command may name keys of one slot only, so each feed is
    its own non-blocking XREADGROUP; the cluster pipeline sends each node its share on
    one of that node's connections (grouped by node, at most ``max_connections`` each),
    and an empty round waits ``block_ms`` before the next (the reader keeps it short).
    """
    if is_cluster(client):
        return await _read_cluster_feeds(
            client, group, consumer, feeds, count=count, block_ms=block_ms
        )
    reply: Any = await client.xreadgroup(
        group, consumer, dict.fromkeys(feeds, ">"), count=count, block=block_ms
    )
    return _found(reply or [])


def _found(reply: Any) -> dict[str, list[FeedEntry]]:
    found: dict[str, list[FeedEntry]] = {}
    for raw_feed, rows in reply:
        entries = [FeedEntry(_text(i), f) for i, f in rows if f is not None]
        if entries:
            found[_text(raw_feed)] = entries
    return found


async def _read_cluster_feeds(
    client: Any, group: str, consumer: str, feeds: Sequence[str], *, count: int, block_ms: int
) -> dict[str, list[FeedEntry]]:
    pipe = client.pipeline(transaction=False)
    for feed in feeds:
        pipe.xreadgroup(group, consumer, {feed: ">"}, count=count)
    replies: list[Any] = await pipe.execute(raise_on_error=True)
    found: dict[str, list[FeedEntry]] = {}
    for reply in replies:
        found.update(_found(reply or []))
    if not found:
        await asyncio.sleep(block_ms / 1000)
    return found


class FeedReader:
    """The one blocking reader of a version: hands each waiting lane its entries."""

    def __init__(
        self,
        conn: redis.asyncio.Redis,
        control: redis.asyncio.Redis,
        group: str,
        options: WorkerOptions,
        gate: RedisGate,
    ) -> None:
        self.conn = conn
        self.control = control
        self.group = group
        self.options = options
        self.gate = gate
        self.wanted: dict[str, PartitionLane] = {}
        self._changed = asyncio.Event()
        self._covered: frozenset[str] = frozenset()
        self._late: set[str] = set()
        """Lanes that started waiting during the read in flight, which misses them."""
        self._reading = 0
        """Sequence number of the read in flight (0: none)."""
        self._seq = 0
        self._conn_id: int | None = None
        self._can_unblock = not is_cluster(conn)
        """On a Cluster the reads do not block (see :func:`read_feeds`): none to unblock."""
        self._unblocker: asyncio.Task[None] | None = None
        self._failures = 0

    def want(self, lane: PartitionLane) -> None:
        """``lane`` waits for entries: include it in the next read (now, if need be)."""
        self.wanted[lane.feed] = lane
        self._changed.set()
        if self._reading and lane.feed not in self._covered:
            self._late.add(lane.feed)
            if self._unblocker is None and self._can_unblock:
                self._unblocker = asyncio.create_task(self._unblock())

    def withdraw(self, lane: PartitionLane) -> None:
        self.wanted.pop(lane.feed, None)

    async def _unblock(self) -> None:
        """Unblock the read in flight while a lane waits that it does not cover.

        CLIENT UNBLOCK answers 0 when the read is not blocked (yet: the two connections
        race), so it is sent again until the read in flight covers every waiting lane,
        or none is in flight. Never raises.
        """
        try:
            while self._reading and self._late and self._conn_id is not None:
                done: Any = await self.control.client_unblock(self._conn_id)
                await asyncio.sleep(0 if int(done) else UNBLOCK_RETRY_S)
        except NoPermissionError:
            self._can_unblock = False
            log.info("CLIENT UNBLOCK is not allowed for this user: reading with short blocks")
        except Exception as e:  # a failed unblock only costs latency; the read fails too
            log.debug("CLIENT UNBLOCK failed: %s", e)
        finally:
            self._unblocker = None

    async def run(self, stop: asyncio.Event) -> None:
        """Read for the waiting lanes until ``stop``; never raises."""
        while not stop.is_set():
            if not self.wanted:
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), self.options.block_ms / 1000)
                continue
            lanes = list(self.wanted.values())
            try:
                found = await self._read([lane.feed for lane in lanes])
                self._failures = 0
            except Exception as e:
                # Wake every lane we read for: after an outage each re-reads its own
                # pending entries (our reply may have been lost after Redis sent it).
                for lane in lanes:
                    self.wanted.pop(lane.feed, None)
                    lane.deliver([])
                await self._failed(e, stop)
                continue
            for feed, entries in found.items():
                waiting = self.wanted.pop(feed, None)
                if waiting is not None:
                    waiting.deliver(entries)
        await settle(self._unblocker)

    async def _read(self, feeds: list[str]) -> dict[str, list[FeedEntry]]:
        if self._conn_id is None and self._can_unblock:
            self._conn_id = int(await self.conn.client_id())
        count = max(MIN_COUNT, min(self.options.batch, READ_BUDGET // len(feeds)))
        block = self.options.block_ms if self._can_unblock else FALLBACK_BLOCK_MS
        self._seq += 1
        self._reading, self._covered = self._seq, frozenset(feeds)
        self._late.clear()
        try:
            return await read_feeds(
                self.conn, self.group, self.options.consumer, feeds, count=count,
                block_ms=min(block, self.options.block_ms),
            )  # fmt: skip
        except Exception:
            self._conn_id = None  # the connection is gone: a new one has a new id
            raise
        finally:
            self._reading, self._covered = 0, frozenset()

    async def _still_served(self) -> bool:
        """Whether ``ms:meta`` still names this version (active or being built). A
        missing ``ms:meta`` means lost data, not a retired version: still served."""
        try:
            raw: Any = await self.control.hmget(keys.META, ["version", "next_version"])
        except Exception:
            return True
        if not raw[0]:
            return True
        return self.group in {keys.group(int(v)) for v in raw if v}

    async def _failed(self, error: Exception, stop: asyncio.Event) -> None:
        self._failures += 1
        kind = classify(error)
        if kind is Kind.TRANSIENT:
            self.gate.report(error)
            await self.gate.wait_up()
        elif kind is Kind.NOT_READY:
            # NOGROUP: a replay retired this version (the worker stops this reader soon:
            # wait quietly) or Redis lost its data (reported once; never recreated here).
            if is_nogroup(error) and not await self._still_served():
                await sleep_or_stop(self.gate.missing.backoff.delay(self._failures), stop)
            else:
                await sleep_or_stop(self.gate.missing.failed(error), stop)
        else:
            log.error("reading %s failed: %s: %s", self.group, type(error).__name__, error)
            await sleep_or_stop(self.gate.missing.backoff.delay(self._failures), stop)


class VersionFeeds:
    """Every lane of one version plus its reader; one task runs them all."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        settings: Settings,
        planner: Planner,
        options: WorkerOptions,
        metrics: Metrics,
        *,
        partitions: int,
        version: int,
        gate: RedisGate,
        limit: asyncio.Semaphore,
    ) -> None:
        self.version = version
        self.partitions = partitions
        self.stop = asyncio.Event()
        # Its own client: a blocking read may last block_ms longer than any other call,
        # and redis-py's retries stay off so every reconnect gets a fresh CLIENT ID.
        base = async_client(
            settings.model_copy(
                update={
                    "retries": 0,
                    "max_connections": 2,
                    "socket_timeout": settings.socket_timeout + options.block_ms / 1000,
                }
            )
        )
        self._base = base
        conn = base if is_cluster(base) else base.client()
        self.reader = FeedReader(conn, client, keys.group(version), options, gate)
        self.lanes = [
            PartitionLane(
                client,
                settings,
                planner,
                options,
                metrics,
                partition=p,
                partitions=partitions,
                version=version,
                gate=gate,
                limit=limit,
            )
            for p in range(partitions)
        ]
        for lane in self.lanes:
            lane.reader = self.reader

    async def run(self, outer: asyncio.Event) -> None:
        """Serve until ``outer`` (the worker's stop) or :meth:`close`; never raises."""
        relay = asyncio.create_task(self._relay(outer))
        tasks = [asyncio.create_task(lane.run(self.stop)) for lane in self.lanes]
        tasks.append(asyncio.create_task(self.reader.run(self.stop)))
        try:
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for result in results:
                if isinstance(result, Exception):
                    log.error("v%s: a lane failed: %r", self.version, result)
        finally:
            relay.cancel()
            await asyncio.gather(relay, return_exceptions=True)
            await self.reader.conn.aclose()
            await self._base.aclose()

    async def _relay(self, outer: asyncio.Event) -> None:
        await outer.wait()
        self.close()

    def close(self) -> None:
        """Stop every lane (each finishes its apply in flight) and the reader."""
        self.stop.set()
        self.reader._changed.set()
        for lane in self.lanes:
            lane.wake.set()
