"""Surviving Redis going away: classify driver errors, back off with jitter, log once.

A long-running process (worker, tier process) meets Redis in many tasks at once. When
Redis goes away they all fail together; logging each failure would print hundreds of
lines per outage and hide what happened. So:

- :func:`classify` says what an exception means: ``TRANSIENT`` (retry later: connection
  lost, timeout, ``LOADING``/``BUSY``/``TRYAGAIN``/``CLUSTERDOWN``/``MASTERDOWN``/``READONLY``),
  ``NOT_READY`` (Redis answers but lacks what we need: no ``ms:meta``, functions or group,
  as after a restart without persistence) or ``PERMANENT`` (anything else: a bug).
- :class:`Backoff` is capped exponential backoff with jitter.
- :class:`Episode` is one run of failures of one thing: the first failure logs ONE
  warning (with the retry number and the next delay, like arq), later ones log at DEBUG
  (and a reminder at INFO every :data:`REMIND_EVERY_S`), and the recovery logs one INFO
  line with the outage's length and retry count.
- :class:`RedisGate` is shared by every task of a process: a task that met a transient
  error calls :meth:`RedisGate.report` and then ``await gate.wait_up()``. One probe task
  pings Redis with backoff until it answers; then every waiting task resumes.
  ``gate.outages`` counts outages, so a task can tell that one happened while it was
  busy (the worker then re-reads its own pending entries: a read reply lost in transit
  left them delivered to it but never seen).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.exceptions import ResponseError

from memstream.producers.driver import is_transient
from memstream.producers.errors import NotInitialisedError

REMIND_EVERY_S = 30.0
"""While an outage lasts, one INFO reminder this often (the warning is only logged once)."""
FLAP_S = 5.0
"""A failure this soon after a recovery continues the same outage (a failover that
answers PING but still refuses writes, say): no second warning."""


class Kind(enum.Enum):
    TRANSIENT = "transient"
    NOT_READY = "not ready"
    PERMANENT = "permanent"


NOT_READY_MARKS = ("NOGROUP", "Function not found", "function not found", "No matching")


def classify(error: BaseException) -> Kind:
    """What ``error`` means for a retry loop (see the module docstring)."""
    if is_transient(error):
        return Kind.TRANSIENT
    if isinstance(error, NotInitialisedError):
        return Kind.NOT_READY
    if isinstance(error, ResponseError) and any(m in str(error) for m in NOT_READY_MARKS):
        return Kind.NOT_READY
    return Kind.PERMANENT


def is_nogroup(error: BaseException) -> bool:
    """The consumer group (or its stream) does not exist: a replay retired it, or Redis
    lost its data."""
    return isinstance(error, ResponseError) and "NOGROUP" in str(error)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff with jitter: retry ``n`` (from 1) waits a random time
    between half and all of ``min(cap, base * 2 ** (n - 1))``. The jitter spreads a
    fleet's reconnects so a restarted Redis is not hit by every worker at once."""

    base: float = 0.1
    cap: float = 2.0

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry ``retry`` (1 for the first retry)."""
        ceiling = min(self.cap, self.base * 2.0 ** min(max(retry - 1, 0), 30))
        jitter: float = (rng or random).random()
        return float(ceiling * (0.5 + 0.5 * jitter))


class Episode:
    """One outage (a run of failures) of ``subject``, logged once.

    ``failed(error)`` returns the delay before the next retry; the first call of an
    episode logs one WARNING naming the error, the retry number and that delay.
    ``recovered()`` ends the episode (one INFO line) and is a no-op outside one.
    """

    def __init__(
        self, log: logging.Logger, subject: str, backoff: Backoff | None = None, hint: str = ""
    ) -> None:
        self.log = log
        self.subject = subject
        """What is being tried, as a gerund: "reaching Redis at host:port"."""
        self.hint = hint
        self.backoff = backoff or Backoff()
        self.retries = 0
        self.since: float | None = None
        self._remind_at = 0.0
        self._recovered_at = -FLAP_S
        self._last_since = 0.0

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, error: BaseException | str) -> float:
        """Record one failure; return the delay (s) before the next try."""
        now = time.monotonic()
        fresh = self.since is None and now - self._recovered_at >= FLAP_S
        if self.since is None and not fresh:
            self.since = self._last_since  # the same outage, flapping: already warned
        if fresh:
            self.retries = 0
        self.retries += 1
        delay = self.backoff.delay(self.retries)
        what = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        if fresh:
            self.since = now
            self._remind_at = now + REMIND_EVERY_S
            self.log.warning(
                "%s failed (%s); retry %d in %.2fs, then on with backoff until it works%s",
                self.subject, what, self.retries, delay, f". {self.hint}" if self.hint else "",
            )  # fmt: skip
        elif now >= self._remind_at:
            self._remind_at = now + REMIND_EVERY_S
            self.log.info(
                "%s still fails after %.0fs (%s); retry %d in %.2fs",
                self.subject, now - (self.since or now), what, self.retries, delay,
            )  # fmt: skip
        else:
            self.log.debug("%s failed (%s); retry %d in %.2fs", self.subject, what, self.retries,
                           delay)  # fmt: skip
        return delay

    def recovered(self) -> None:
        """End the episode, if one is open: one INFO line with its length and retries."""
        if self.since is None:
            return
        self.log.info(
            "%s works again after %.1fs and %d retries",
            self.subject, time.monotonic() - self.since, self.retries,
        )  # fmt: skip
        self._recovered_at, self._last_since = time.monotonic(), self.since
        self.since = None


async def sleep_or_stop(seconds: float, stop: asyncio.Event | None) -> None:
    """Sleep ``seconds``, or less if ``stop`` is set meanwhile."""
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class RedisGate:
    """Shared by every task of one process: one probe, one warning per outage.

    ``probe`` is a cheap call (``PING``) on a client without redis-py retries, so each
    probe is one try and the backoff shown is the one used. ``stop`` ends the waiting.
    """

    def __init__(
        self,
        probe: Callable[[], Awaitable[object]],
        log: logging.Logger,
        address: str,
        *,
        backoff: Backoff | None = None,
        stop: asyncio.Event | None = None,
    ) -> None:
        self.probe = probe
        self.episode = Episode(log, f"reaching Redis at {address}", backoff)
        self.missing = Episode(
            log,
            f"finding memstream's ms:meta, functions and consumer groups in Redis at {address}",
            backoff,
            hint="Was Redis restarted without persistence? The worker waits and does not "
            "recreate groups (that could skip or re-apply entries): run `memstream init` "
            "if the data is really gone",
        )
        """Shared by the tasks that find Redis up but its data missing: one warning."""
        self.stop = stop
        self.outages = 0
        """Outages seen so far; a task that saw a different count knows one happened."""
        self._up = asyncio.Event()
        self._up.set()
        self._prober: asyncio.Task[None] | None = None

    @property
    def down(self) -> bool:
        return not self._up.is_set()

    def report(self, error: BaseException) -> None:
        """A task met a transient error: start an outage (and its probe) unless one is
        open already. Never raises."""
        if self.down:
            return
        self.outages += 1
        self._up.clear()
        delay = self.episode.failed(error)
        self._prober = asyncio.create_task(self._probe(delay))

    async def wait_up(self) -> None:
        """Return once Redis answers again (at once if it does), or when ``stop`` is set."""
        if self._up.is_set():
            return
        waits = [asyncio.ensure_future(self._up.wait())]
        if self.stop is not None:
            waits.append(asyncio.ensure_future(self.stop.wait()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _probe(self, delay: float) -> None:
        while True:
            await sleep_or_stop(delay, self.stop)
            if self.stop is not None and self.stop.is_set():
                break
            try:
                await self.probe()
            except Exception as e:  # every failure is one more retry, never a crash
                delay = self.episode.failed(e)
                continue
            self.episode.recovered()
            break
        self._up.set()

    async def aclose(self) -> None:
        """Stop the probe task, if one runs."""
        if self._prober is not None and not self._prober.done():
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
