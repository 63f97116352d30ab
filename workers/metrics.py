"""In-process worker counters: throughput by event type, DLQ, unknown types, batch sizes,
and the plan and apply latency histograms.

Recording is plain Python (a dict bump, a bisect), so a worker without ``--metrics-port``
pays next to nothing and never imports ``prometheus_client``; :mod:`.metrics_http` turns
these figures into Prometheus metrics when scraped.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                     2.5, 5.0, 10.0)  # fmt: skip
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 200, 500, 1000, 2000, 5000)


class _Outcome(Protocol):
    applied: int
    dead: int
    unknown: int
    by_type: dict[tuple[str, str], int]


@dataclass
class Histogram:
    """Fixed upper bounds, Prometheus-style: ``counts[i]`` are observations in bucket
    ``i`` (not cumulative; the last is +Inf), with their ``total`` and ``sum``."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: int = 0
    sum: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        """Count one observation ``value`` (seconds, or entries for batch sizes)."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, int]]:
        """(upper bound as text, observations at or under it), ending with ``+Inf``."""
        out, running = [], 0
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


@dataclass
class Metrics:
    applied: int = 0
    dead: int = 0
    unknown: int = 0
    skipped: int = 0
    """Entries whose XACK returned 0: already applied by someone else (no second effect)."""
    claimed: int = 0
    recovered: int = 0
    """Own pending entries read again at start or after an outage."""
    batches: int = 0
    latencies: list[float] = field(default_factory=list)
    by_type: dict[tuple[str, str], int] = field(default_factory=dict)
    """(event type, "applied" | "dead" | "unknown") -> entries."""
    batch_sizes: Histogram = field(default_factory=lambda: Histogram(BATCH_BUCKETS))
    apply_s: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS_S))
    """Round trip of one batch's ``ms_apply`` call."""
    plan_s: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS_S))
    """CPU time planning one batch (decode and every projection's apply)."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    """Held while recording and while a scrape copies the figures (another thread)."""

    def record(
        self, outcome: _Outcome, acked: int, seconds: float, apply_s: float | None = None
    ) -> None:
        """Count one applied batch: its ``outcome``, the entries ``acked`` by ms_apply,
        ``seconds`` from read to applied, and ``apply_s`` the ms_apply call alone."""
        total = outcome.applied + outcome.dead + outcome.unknown
        with self.lock:
            self.applied += outcome.applied
            self.dead += outcome.dead
            self.unknown += outcome.unknown
            self.skipped += total - acked
            self.batches += 1
            self.batch_sizes.observe(total)
            if apply_s is not None:
                self.apply_s.observe(apply_s)
            for key, n in outcome.by_type.items():
                self.by_type[key] = self.by_type.get(key, 0) + n
            self.latencies.append(seconds)
            if len(self.latencies) > 10_000:
                del self.latencies[:5000]

    def observe_plan(self, seconds: float) -> None:
        """Count one batch's planning time, ``seconds`` of CPU."""
        with self.lock:
            self.plan_s.observe(seconds)

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy of the counters, for a scrape in another thread."""
        with self.lock:
            return {
                "by_type": dict(self.by_type),
                "skipped": self.skipped,
                "claimed": self.claimed,
                "recovered": self.recovered,
                "batches": self.batches,
                "batch_sizes": self.batch_sizes.cumulative(),
                "batch_sizes_sum": self.batch_sizes.sum,
                "apply_s": self.apply_s.cumulative(),
                "apply_s_sum": self.apply_s.sum,
                "plan_s": self.plan_s.cumulative(),
                "plan_s_sum": self.plan_s.sum,
            }

    def summary(self) -> str:
        return (
            f"applied={self.applied} dlq={self.dead} unknown={self.unknown} "
            f"duplicates_skipped={self.skipped} claimed={self.claimed} "
            f"recovered={self.recovered} batches={self.batches}"
        )
