"""In-process worker counters: throughput, DLQ, unknown types and apply latency."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


class _Outcome(Protocol):
    applied: int
    dead: int
    unknown: int


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

    def record(self, outcome: _Outcome, acked: int, seconds: float) -> None:
        total = outcome.applied + outcome.dead + outcome.unknown
        self.applied += outcome.applied
        self.dead += outcome.dead
        self.unknown += outcome.unknown
        self.skipped += total - acked
        self.batches += 1
        self.latencies.append(seconds)
        if len(self.latencies) > 10_000:
            del self.latencies[:5000]

    def summary(self) -> str:
        return (
            f"applied={self.applied} dlq={self.dead} unknown={self.unknown} "
            f"duplicates_skipped={self.skipped} claimed={self.claimed} "
            f"recovered={self.recovered} batches={self.batches}"
        )
