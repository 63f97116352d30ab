"""Riding out a Redis outage in a blocking command (``memstream replay``).

The worker and the tier process share a :class:`~.resilience.RedisGate` on their event
loop; a one-shot command has one thread and one thing to retry, so it needs only this:
run a step, and while it fails with a transient error, log once per outage
(:class:`~.resilience.Episode`), back off with jitter and run it again, up to a limit on
the outage's length. Anything not transient is raised at once.

What makes this safe is the step, not the loop: each step given here must be safe to
run again after it failed part-way (or after it succeeded but its reply was lost).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from memstream.producers.errors import MemstreamError

from .resilience import Backoff, Episode, Kind, classify

T = TypeVar("T")

OUTAGE_LIMIT_S = 600.0
"""How long a one-shot command waits for Redis to come back before it gives up."""


class OutageTooLongError(MemstreamError):
    """Redis stayed unreachable for longer than the command was willing to wait."""


class OutageRetry:
    """Runs steps through outages; one :class:`Episode` for the whole command.

    ``subject`` names what is tried, as a gerund ("replaying v3 in Redis at host:port").
    ``limit_s`` bounds each outage; ``sleep`` is injectable so a test can count retries.
    """

    def __init__(
        self,
        log: logging.Logger,
        subject: str,
        *,
        limit_s: float = OUTAGE_LIMIT_S,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.episode = Episode(log, subject, backoff or Backoff(base=0.2, cap=5.0))
        self.limit_s = limit_s
        self.sleep = sleep
        self.outages = 0
        """Outages ridden out so far (for summaries and tests)."""

    def run(self, step: Callable[[], T], *, before: Callable[[], None] | None = None) -> T:
        """Run ``step`` until it returns; ``before`` runs ahead of every retry (not the
        first try), for example to re-take a lock that lapsed during the outage.

        Raises the step's error when it is not transient, and :class:`OutageTooLongError`
        when one outage outlasts ``limit_s``."""
        first = True
        while True:
            try:
                if not first and before is not None:
                    before()
                first = False
                result = step()
            except Exception as e:
                if classify(e) is not Kind.TRANSIENT:
                    raise
                if not self.episode.down:
                    self.outages += 1
                delay = self.episode.failed(e)
                lasted = time.monotonic() - (self.episode.since or time.monotonic())
                if lasted + delay > self.limit_s:
                    raise OutageTooLongError(
                        f"{self.episode.subject}: Redis did not come back within "
                        f"{self.limit_s:.0f}s ({type(e).__name__}: {e})"
                    ) from e
                self.sleep(delay)
                continue
            self.episode.recovered()
            return result
