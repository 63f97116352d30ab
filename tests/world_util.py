"""Shared by the world-model tests: fold events straight into the active version through
the real ``ms_write`` call and WOBS op, and an independent numpy/scipy oracle."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis
from scipy import stats  # type: ignore[import-untyped]

from memstream.producers import keys
from memstream.producers.entry import StoredEvent
from memstream.producers.events import Event, EvidenceObserved
from memstream.producers.settings import Settings
from memstream.projections.base import ApplyContext
from memstream.projections.exploration import Exploration
from memstream.projections.ops import Op, Writes, write_command
from memstream.projections.world import World

PARTITIONS = 16


def stored(owner: str, i: int, event: Event, start_ms: int = 1_700_000_000_000) -> StoredEvent:
    """The ``i``-th event of ``owner``'s log (ids increase with i)."""
    return StoredEvent(owner, f"{start_ms + i}-0", event.event_type, 1, event)


def fold(r: redis.Redis, events: Sequence[StoredEvent], version: int = 1) -> None:
    """Apply ``events`` in the given order to ``version`` as replay does (``ms_write``),
    one call per partition and chunk, with the projection clock at now."""
    now = int(time.time() * 1000)
    by_p: dict[int, list[list[Op]]] = {}
    for event in events:
        p = keys.partition(event.owner, PARTITIONS)
        ctx = ApplyContext(keys.Projection(p, version), Settings(), now)
        writes = Writes()
        for projection in (World(), Exploration()):
            if event.type in projection.handles:
                projection.apply(event, ctx, writes)
        by_p.setdefault(p, []).append(writes.ops)
    call: Any = r.execute_command
    for batches in by_p.values():
        for start in range(0, len(batches), 200):
            call(*write_command(batches[start : start + 200]))


@dataclass(frozen=True)
class Oracle:
    """Hierarchical Dirichlet shrinkage computed directly from the event list."""

    outcomes: Sequence[str]
    kappa: float
    alpha0: float

    def alpha(self, events: Sequence[EvidenceObserved], path: Sequence[str]) -> np.ndarray:
        """Posterior parameters at ``path[0]``: root Dirichlet(alpha0), then each level's
        prior is kappa times its parent's posterior mean."""
        root_first = list(reversed(path))
        k = len(self.outcomes)
        alpha = np.full(k, self.alpha0, dtype=np.float64)
        for depth in range(1, len(root_first) + 1):
            node = root_first[:depth]
            counts = np.zeros(k, dtype=np.float64)
            for e in events:
                if list(reversed(e.path))[:depth] == node:
                    counts[self.outcomes.index(e.outcome)] += e.weight
            if depth > 1:
                alpha = self.kappa * alpha / alpha.sum()
            alpha = alpha + counts
        return alpha

    def predict(self, events: Sequence[EvidenceObserved], path: Sequence[str]) -> np.ndarray:
        alpha = self.alpha(events, path)
        predictive: np.ndarray = alpha / alpha.sum()
        return predictive

    def interval(
        self, events: Sequence[EvidenceObserved], path: Sequence[str], outcome: str, mass: float
    ) -> tuple[float, float]:
        alpha = self.alpha(events, path)
        a = alpha[self.outcomes.index(outcome)]
        b = alpha.sum() - a
        tail = (1 - mass) / 2
        lo, hi = stats.beta.ppf([tail, 1 - tail], a, b)
        return float(lo), float(hi)

    def surprise(
        self, events: Sequence[EvidenceObserved], path: Sequence[str], outcome: str
    ) -> float:
        return float(-np.log(self.predict(events, path)[self.outcomes.index(outcome)]))
