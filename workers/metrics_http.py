"""``--metrics-port``: serve ``/metrics`` for Prometheus (``prometheus-client``).

Counters and histograms come from the process's :class:`~.metrics.Metrics`; consumer
lag, pending entries and DLQ length are read from Redis at scrape time (one pipelined
round trip), so they are right even for partitions this process does not serve. Names
follow Prometheus conventions: ``memstream_`` prefix, ``_total`` counters, seconds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis

from memstream.producers import keys
from memstream.producers.errors import ConfigError

from .metrics import Histogram, Metrics

if TYPE_CHECKING:
    from memstream.tiering.tier import PassSummary

log = logging.getLogger("memstream.metrics")


def _histogram(name: str, doc: str, buckets: Any, total: float) -> Any:
    from prometheus_client.core import HistogramMetricFamily

    return HistogramMetricFamily(name, doc, buckets=list(buckets), sum_value=total)


def worker_families(m: Metrics) -> Iterator[Any]:
    """The worker's own counters and histograms as metric families."""
    from prometheus_client.core import CounterMetricFamily

    snap = m.snapshot()
    by_type: dict[tuple[str, str], int] = snap["by_type"]
    docs = {
        "applied": "Events folded into the projections, by event type.",
        "dead": "Entries dead-lettered, by event type ('' when it could not be read).",
        "unknown": "Events of a type no projection folds (acked and counted), by type.",
    }
    names = {"applied": "applied", "dead": "dead_lettered", "unknown": "unknown"}
    for result, doc in docs.items():
        family = CounterMetricFamily(f"memstream_events_{names[result]}", doc, labels=["type"])
        for (etype, res), n in sorted(by_type.items()):
            if res == result:
                family.add_metric([etype], n)
        yield family
    simple = {
        "events_duplicate_skipped": ("skipped", "Entries whose XACK found them already "
                                     "applied: no second effect (ms_apply counts them per "
                                     "batch, so they carry no type)."),
        "entries_claimed": ("claimed", "Entries taken over from idle consumers."),
        "entries_recovered": ("recovered", "Own pending entries read again after a restart "
                              "or an outage."),
        "batches": ("batches", "Batches applied (one ms_apply call each)."),
    }  # fmt: skip
    for name, (key, doc) in simple.items():
        yield CounterMetricFamily(f"memstream_{name}", doc, value=snap[key])
    yield _histogram("memstream_batch_size_entries", "Entries per applied batch.",
                     snap["batch_sizes"], snap["batch_sizes_sum"])  # fmt: skip
    yield _histogram("memstream_apply_duration_seconds", "Round trip of one ms_apply call.",
                     snap["apply_s"], snap["apply_s_sum"])  # fmt: skip
    yield _histogram("memstream_plan_duration_seconds",
                     "CPU time planning one batch (decode and every projection's apply).",
                     snap["plan_s"], snap["plan_s_sum"])  # fmt: skip


def redis_families(client: redis.Redis) -> Iterator[Any]:
    """Lag and pending per partition and version, and DLQ length per partition."""
    from prometheus_client.core import GaugeMetricFamily

    from .replay import read_deployment

    up = GaugeMetricFamily("memstream_redis_up", "1 when this scrape could read Redis.")
    lag = GaugeMetricFamily(
        "memstream_consumer_lag_entries",
        "Feed entries not yet delivered to the version's group.",
        labels=["partition", "version"],
    )
    pending = GaugeMetricFamily(
        "memstream_consumer_pending_entries",
        "Entries delivered to the version's group and not yet acked.",
        labels=["partition", "version"],
    )
    dlq = GaugeMetricFamily(
        "memstream_dlq_entries", "Dead letters waiting in the partition's DLQ.",
        labels=["partition"],
    )  # fmt: skip
    try:
        d = read_deployment(client)
        pipe = client.pipeline(transaction=False)
        for p in range(d.partitions):
            pipe.xinfo_groups(keys.feed(p))
            pipe.xlen(keys.dlq(p))
        replies = pipe.execute(raise_on_error=False)
    except (redis.RedisError, OSError) as e:
        log.debug("metrics scrape could not read Redis: %s", e)
        up.add_metric([], 0)
        yield up
        return
    for p in range(d.partitions):
        groups, length = replies[2 * p], replies[2 * p + 1]
        for g in groups if isinstance(groups, list) else []:
            version = keys.group_version(g["name"])
            if version is None:
                continue
            labels = [str(p), str(version)]
            waiting = g.get("lag")
            lag.add_metric(labels, int(waiting) if waiting is not None else 0)
            pending.add_metric(labels, int(g["pending"]))
        dlq.add_metric([str(p)], int(length) if isinstance(length, int) else 0)
    up.add_metric([], 1)
    yield from (up, lag, pending, dlq)


TIER_FIELDS = {
    "segments": ("memstream_tier_segments_archived", "Log segments archived."),
    "entries": ("memstream_tier_entries_archived", "Log entries archived."),
    "raw_bytes": ("memstream_tier_raw_bytes", "msgpack bytes archived, before compression."),
    "stored_bytes": ("memstream_tier_stored_bytes", "Bytes written to the archive."),
    "lost_races": ("memstream_tier_lost_races", "Segments another process archived first."),
    "cold_values": ("memstream_tier_cold_values", "Projection values moved to the archive."),
}
PASS_BUCKETS_S = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)


@dataclass
class TierMetrics:
    """What ``memstream tier`` passes did, summed (one pass's summary at a time)."""

    passes: int = 0
    failed: int = 0
    totals: dict[str, int] = field(default_factory=dict)
    seconds: Histogram = field(default_factory=lambda: Histogram(PASS_BUCKETS_S))
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def on_pass(self, summary: PassSummary | None, seconds: float) -> None:
        """Count one pass of ``seconds``; ``summary`` None (or with errors) is a failure."""
        with self.lock:
            self.passes += 1
            self.failed += summary is None or bool(summary.errors)
            self.seconds.observe(seconds)
            for name in TIER_FIELDS:
                value = 0 if summary is None else int(getattr(summary, name))
                self.totals[name] = self.totals.get(name, 0) + value

    def families(self) -> Iterator[Any]:
        """The tier's counters and pass-duration histogram as metric families."""
        from prometheus_client.core import CounterMetricFamily

        with self.lock:
            totals, passes, failed = dict(self.totals), self.passes, self.failed
            buckets, total_s = self.seconds.cumulative(), self.seconds.sum
        yield CounterMetricFamily("memstream_tier_passes", "Tier passes run.", value=passes)
        yield CounterMetricFamily(
            "memstream_tier_pass_failures", "Passes that failed or met errors.", value=failed
        )
        for name, (metric, doc) in TIER_FIELDS.items():
            yield CounterMetricFamily(metric, doc, value=totals.get(name, 0))
        yield _histogram("memstream_tier_pass_duration_seconds", "Wall time of one tier pass.",
                         buckets, total_s)  # fmt: skip


class _Collector:
    def __init__(self, produce: Callable[[], Iterator[Any]]) -> None:
        self.produce = produce

    def collect(self) -> Iterator[Any]:
        yield from self.produce()


def serve_metrics(
    port: int,
    produce: Callable[[], Iterator[Any]],
    addr: str = "0.0.0.0",  # noqa: S104  (a scrape target: Prometheus runs elsewhere)
) -> Any:
    """Serve ``/metrics`` on ``addr:port`` in a daemon thread, from what ``produce``
    yields at each scrape; returns the server (``shutdown()`` stops it)."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(produce))
    try:
        server, _thread = start_http_server(port, addr=addr, registry=registry)
    except OSError as e:  # port taken, or not ours to bind: say so before any work starts
        raise ConfigError(f"cannot serve metrics on {addr}:{port}: {e.strerror or e}") from e
    log.info("serving Prometheus metrics on port %s", port)
    return server


def serve_worker_metrics(port: int, metrics: Metrics, client: redis.Redis) -> Any:
    """``/metrics`` for a worker: ``metrics`` and ``client``'s lag, pending and DLQ."""

    def produce() -> Iterator[Any]:
        yield from worker_families(metrics)
        yield from redis_families(client)

    return serve_metrics(port, produce)


def serve_tier_metrics(port: int, tier: TierMetrics, client: redis.Redis) -> Any:
    """``/metrics`` for ``memstream tier``: ``tier``'s passes and ``client``'s DLQ, lag."""

    def produce() -> Iterator[Any]:
        yield from tier.families()
        yield from redis_families(client)

    return serve_metrics(port, produce)
