"""Folding logs into one version's projections, shared by full and owner replay.

A :class:`Folder` reads an owner's log (cold segments, then the hot log) and turns each
event into the ops a worker would write for it, with the same planner and settings.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from memstream.producers import keys
from memstream.producers.codec import DecodeError
from memstream.producers.deployment import Deployment
from memstream.producers.entry import decode_entry
from memstream.producers.errors import MemstreamError
from memstream.producers.settings import Settings
from memstream.projections.base import ApplyContext, Projection
from memstream.projections.ops import CHANNEL_OPS, Op
from memstream.projections.registry import default_projections

from .plan import Fields, Planner
from .signing import Verifier


class ReplayError(MemstreamError):
    """Replay could not finish; the active version was left serving."""


@dataclass
class FoldStats:
    owners: int = 0
    events: int = 0
    """Events folded (their ops were written)."""
    undecodable: int = 0
    """Skipped: live workers dead-letter these too."""
    unknown: int = 0
    """Skipped: an event type this code does not know (counted by workers, not folded)."""
    failed: int = 0
    """Skipped: a projection raised on it (live workers dead-letter it)."""
    bad_owners: int = 0
    """Skipped: an owner id in ``heads`` that is not a valid id (written by hand)."""


@dataclass(frozen=True, slots=True)
class ReplaySummary:
    from_version: int
    to_version: int
    stats: FoldStats
    seconds: float
    owner: str | None = None

    @property
    def events_per_s(self) -> float:
        return self.stats.events / self.seconds if self.seconds > 0 else 0.0

    def text(self) -> str:
        s = self.stats
        what = (
            f"rebuilt owner {self.owner} in v{self.to_version}"
            if self.owner is not None
            else f"replayed v{self.from_version} -> v{self.to_version} (active: v{self.to_version})"
        )
        return (
            f"{what}: {s.owners} owners, {s.events} events in {self.seconds:.2f}s "
            f"({self.events_per_s:,.0f} events/s); skipped {s.undecodable} undecodable, "
            f"{s.unknown} unknown-type, {s.failed} failed"
        )


class Folder:
    """Reads logs in pages and turns each event into the ops of one version, exactly as a
    worker would (same planner, same settings). Shared by full and owner replay."""

    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        projections: Sequence[Projection] | None,
        version: int,
    ) -> None:
        self.client = client
        self.settings = settings
        self.version = version
        chosen = projections if projections is not None else default_projections()
        # event_writes never looks at deliveries; the bound only matters to plan().
        self.planner = Planner(chosen, settings, max_deliveries=1)
        self.stats = FoldStats()
        # One clock for the whole fold: an event whose TTL has passed writes nothing.
        self.now_ms = int(time.time() * 1000)
        self._ctx: dict[int, ApplyContext] = {}
        self.verifier = Verifier(client)  # skip what workers refuse (docs/security.md)

    def entries(self, p: int, owner: str, start: str, end: str) -> Iterator[tuple[str, Fields]]:
        """Log entries from ``start`` ('-' or an exclusive '(id') up to ``end`` inclusive."""
        # Cold tier: archived segments first, then the hot log, with no gap or duplicate.
        from memstream.tiering.hooks import log_entries

        yield from log_entries(self.client, self.settings, p, owner, start=start, end=end)

    def ops(self, p: int, owner: str, log_id: str, fields: Fields) -> list[Op] | None:
        """The event's ops in this version, or None (counted) when it folds to nothing."""
        try:
            if self.verifier.reason(p, owner, log_id, fields):
                raise DecodeError("sig", "is not ms_append's signature")
            event = decode_entry(owner, log_id, fields)
        except DecodeError:
            self.stats.undecodable += 1
            return None
        if not event.known:
            self.stats.unknown += 1
            return None
        ctx = self._ctx.get(p)
        if ctx is None:
            ctx = self._ctx[p] = ApplyContext(
                keys.Projection(p, self.version), self.settings, self.now_ms
            )
        try:
            writes = self.planner.event_writes(event, ctx)
        except Exception:  # a projection bug: workers dead-letter the event, so skip it too
            self.stats.failed += 1
            return None
        self.stats.events += 1
        # Notifications are for live changes; a fold of history must not replay them.
        return [op for op in writes.ops if op[0] not in CHANNEL_OPS]


def read_deployment(client: redis.Redis) -> Deployment:
    raw: Any = client.hgetall(keys.META)
    return Deployment.from_meta(raw)


def where(client: redis.Redis) -> str:
    """``host:port`` of a client's pool, for log lines (never its credentials)."""
    pool = getattr(client, "connection_pool", None)
    if pool is None:  # a Cluster client: any node names it
        return f"cluster via {client.get_default_node().name}"  # type: ignore[attr-defined]
    kw = pool.connection_kwargs
    return str(kw.get("path") or f"{kw.get('host', 'localhost')}:{kw.get('port', 6379)}")


def run(client: redis.Redis, command: tuple[Any, ...]) -> Any:
    """Send one prebuilt command (FCALL ...): redis-py leaves execute_command untyped."""
    return client.execute_command(*command)  # type: ignore[no-untyped-call]
