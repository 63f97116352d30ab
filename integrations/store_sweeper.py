"""The TTL sweeper of :mod:`.langgraph_store`: find expired items and append their expiry.

A sweep pages through the owner's listed items (:data:`PAGE` refs a round trip), reads
each one's newest version and expiry (``st_rf``, not the documents), and appends one
``store.expired`` event per expired version, pipelined. The worker folds it as a delete
right after that version (``projections/store.py``), so the item leaves the listing, its
document becomes a tombstone and its creation history is cleared, whatever the order the
events arrive in, and however many stores sweep the same owner (a second expiry of the
same version changes nothing). Reads never depended on it: they leave expired items out.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from memstream.producers import keys
from memstream.producers.events import Event
from memstream.producers.events_store import StoreExpired
from memstream.projections.reader import AsyncReader
from memstream.projections.store import read_expiries, read_refs, split_ref

log = logging.getLogger("memstream.integrations.store")

PAGE = 500
DEFAULT_INTERVAL_MIN = 5.0
"""Minutes between sweeps when neither the call nor ``TTLConfig`` names an interval."""


async def sweep(
    reader: AsyncReader,
    pk: keys.Projection,
    owner: str,
    append: Callable[[list[Event]], Awaitable[None]],
) -> int:
    """Append an expiry for every listed item of ``owner`` expired by this clock; return
    how many. ``reader`` runs the read plans, ``append`` appends events (pipelined)."""
    swept, cursor = 0, ""
    while True:
        refs = await reader.run(read_refs(pk, owner, (), PAGE, cursor))
        if not refs:
            return swept
        now = time.time() * 1000
        expiries = await reader.run(read_expiries(pk, owner, refs))
        expired: list[Event] = []
        for ref, found in zip(refs, expiries, strict=True):
            if found is not None and found[1] is not None and found[1] <= now:
                namespace, key = split_ref(ref)
                expired.append(StoreExpired(namespace=list(namespace), key=key, of=found[0]))
        await append(expired)
        swept += len(expired)
        cursor = refs[-1]


class Sweeper:
    """Runs ``sweep_once`` every ``interval`` minutes on ``loop`` until stopped."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sweep_once: Callable[[], Awaitable[int]]
    ) -> None:
        self._loop, self._sweep_once = loop, sweep_once
        self._stop: asyncio.Event | None = None
        self.future: concurrent.futures.Future[None] | None = None

    def start(self, interval_min: float) -> concurrent.futures.Future[None]:
        """Start (or return the running) sweep loop; its future ends when it stops."""
        if self.future is not None and not self.future.done():
            return self.future
        self.future = asyncio.run_coroutine_threadsafe(self._run(interval_min * 60), self._loop)
        return self.future

    async def _run(self, interval_s: float) -> None:
        self._stop = asyncio.Event()
        while not self._stop.is_set():
            try:
                swept = await self._sweep_once()
                if swept:
                    log.info("store TTL sweep: %d expired items removed", swept)
            except Exception:  # a sweep that fails (Redis away) is retried next interval
                log.warning("store TTL sweep failed", exc_info=True)
            with contextlib.suppress(TimeoutError):  # the interval passed: sweep again
                await asyncio.wait_for(self._stop.wait(), interval_s)

    def stop(self, timeout: float | None = None) -> bool:
        """Ask the loop to stop; True once it has (within ``timeout`` seconds)."""
        future = self.future
        if future is None:
            return True
        self._loop.call_soon_threadsafe(lambda: self._stop.set() if self._stop else None)
        if self._stop is None:  # not started running yet: cancel it
            future.cancel()
        try:
            future.result(timeout)
        except concurrent.futures.CancelledError:
            pass
        except concurrent.futures.TimeoutError:
            return False
        return True
