"""Worker tuning knobs, with defaults that suit one Redis node."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    consumer: str
    batch: int = 200
    block_ms: int = 1000
    """Also bounds how long a SIGTERM waits for a blocked read to return."""
    claim_idle_ms: int = 30_000
    """An entry pending this long belongs to a dead or stuck consumer: take it over."""
    max_deliveries: int = 5
    trim_every_s: float = 5.0
    meta_every_s: float = 1.0
    connections: int = 16
    """Redis calls the apply lanes may have in flight at once (fetch, apply, claim): with
    the readers (one per version) and a few housekeeping calls, this bounds the
    connections a worker holds, whatever the partition count."""
    projections: tuple[str, ...] = ()
    """Extra projections to fold besides the built-in ones, each ``package.module:attr``
    (:func:`memstream.projections.registry.load`)."""
    metrics_port: int | None = None
    """Serve Prometheus ``/metrics`` on this port (:mod:`.metrics_http`); None: no server."""
