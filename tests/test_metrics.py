"""``memstream worker --metrics-port``: a real worker process serves /metrics, and
prometheus_client's own parser reads it back with the figures we caused."""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import redis
from prometheus_client.parser import text_string_to_metric_families

from memstream.producers import GenericEvent, Producer
from memstream.workers.embedded import free_port
from tests.tier_util import drain, fill
from tests.workers_util import spawn_worker, stop_worker, wait_until


def scrape(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample(families: dict[str, Any], name: str, **labels: str) -> float | None:
    for family in families.values():
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def test_a_worker_serves_prometheus_metrics(deployed: str, r: redis.Redis, tmp_path: Path) -> None:
    port = free_port()
    worker = spawn_worker(deployed, "wmet", "--metrics-port", str(port), log=tmp_path / "w.log")
    try:
        with Producer.from_url(deployed) as producer:
            producer.start_session("agent.met", "s1")
            for i in range(5):
                producer.append_message("agent.met", "s1", "user", f"hello {i}")
            producer.append("agent.met", GenericEvent(type="custom.thing", data={"x": 1}))

        def applied() -> bool:
            try:
                families = scrape(port)
            except OSError:  # the worker is still starting its server
                return False
            return sample(families, "memstream_events_applied_total",
                          type="message.appended") == 5  # fmt: skip

        wait_until(applied, 20, "the worker to report 5 applied messages")
        families = scrape(port)
    finally:
        assert stop_worker(worker) == 0

    assert sample(families, "memstream_events_applied_total", type="session.started") == 1
    assert sample(families, "memstream_events_unknown_total", type="custom.thing") == 1
    assert sample(families, "memstream_events_dead_lettered_total") is None  # none happened
    assert families["memstream_events_dead_lettered"].type == "counter"
    assert sample(families, "memstream_events_duplicate_skipped_total") == 0
    batches = sample(families, "memstream_batches_total")
    assert batches is not None and batches >= 1
    # Histograms: one observation per batch, and every entry counted in the sizes.
    assert sample(families, "memstream_batch_size_entries_count") == batches
    assert sample(families, "memstream_batch_size_entries_sum") == 7
    assert sample(families, "memstream_apply_duration_seconds_count") == batches
    assert sample(families, "memstream_apply_duration_seconds_bucket", le="+Inf") == batches
    assert sample(families, "memstream_plan_duration_seconds_count") == batches
    assert families["memstream_apply_duration_seconds"].type == "histogram"
    # Redis-side gauges, one per partition and version: everything was applied.
    lags = [s for s in families["memstream_consumer_lag_entries"].samples]
    assert sorted(int(s.labels["partition"]) for s in lags) == list(range(16))
    assert {s.labels["version"] for s in lags} == {"1"}
    assert sum(s.value for s in lags) == 0
    pending = families["memstream_consumer_pending_entries"].samples
    assert sum(s.value for s in pending) == 0
    assert len(families["memstream_dlq_entries"].samples) == 16
    assert sample(families, "memstream_redis_up") == 1
    assert "Traceback" not in (tmp_path / "w.log").read_text()


async def test_the_tier_process_serves_its_metrics(
    deployed: str, r: redis.Redis, tmp_path: Path
) -> None:
    fill(deployed, ["ann", "bea"], 80)
    await drain(deployed, r)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "memstream.workers.cli", "tier", "--redis-url", deployed,
         "--archive-url", f"file://{tmp_path}/archive", "--keep-last", "30",
         "--interval-s", "0.2", "--metrics-port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:

        def passed() -> bool:
            try:
                return (sample(scrape(port), "memstream_tier_passes_total") or 0) >= 2
            except OSError:
                return False

        wait_until(passed, 30, "two tier passes")
        families = scrape(port)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    assert sample(families, "memstream_tier_segments_archived_total") == 2
    assert sample(families, "memstream_tier_entries_archived_total") == 100
    assert sample(families, "memstream_tier_pass_failures_total") == 0
    passes = sample(families, "memstream_tier_passes_total")
    assert sample(families, "memstream_tier_pass_duration_seconds_count") == passes
    assert sample(families, "memstream_redis_up") == 1


def test_a_taken_port_is_one_line(deployed: str) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "memstream.workers.cli", "worker", "--redis-url", deployed,
             "--metrics-port", str(port)],
            check=False, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert out.returncode != 0
    assert f"cannot serve metrics on 0.0.0.0:{port}" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
