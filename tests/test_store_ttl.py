"""The LangGraph store's TTL sweeper, listing of expired items and exact creation times:
the projection converges with expiries in any order, and a real worker process folds what
a real store sweeps, against a real redis-server."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langgraph.store.base import PutOp

from memstream.integrations.langgraph_store import MemstreamStore
from memstream.producers import keys
from memstream.producers.events_store import StoreDeleted, StoreExpired, StorePut, StoreRefreshed
from memstream.projections.store import Store, after, complement, ref_of, store_version
from memstream.projections.testing import check_convergence, event_streams, with_deliveries
from tests.workers_util import spawn_worker, stop_worker, wait_until

OWNER = "app.ttl"
NOW = (int(time.time()) + 86_400) * 1000
START = NOW - 20_000
NS = st.sampled_from([["u1"], ["u1", "mem"]])
KEY = st.sampled_from(["k1", "k2"])
# Versions the events of a stream get (a span of 3 ms, so they meet), odd ones included.
OF = st.builds(
    lambda ms, seq: f"{START + ms:013d}-{seq:010d}", st.integers(0, 3), st.integers(0, 3)
)
PAYLOADS: dict[str, Any] = {
    "store.put": st.builds(
        StorePut, namespace=NS, key=KEY, value=st.just({"text": "redis cache"}),
        ttl_s=st.none() | st.just(5.0)),
    "store.deleted": st.builds(StoreDeleted, namespace=NS, key=KEY),
    "store.refreshed": st.builds(StoreRefreshed, namespace=NS, key=KEY, of=OF, ttl_s=st.just(60.0)),
    "store.expired": st.builds(StoreExpired, namespace=NS, key=KEY, of=OF),
}  # fmt: skip


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(case=with_deliveries(event_streams(
    owners=("alice",), kinds=tuple(PAYLOADS), payloads=PAYLOADS, min_size=2, max_size=10,
    start_ms=START, span_ms=3)))  # fmt: skip
def test_expiries_converge_in_any_order(r: redis.Redis, deployed: str, case: Any) -> None:
    events, (order, duplicates, sizes) = case
    check_convergence(r, [Store()], events, order=order, duplicates=duplicates,
                      batch_sizes=sizes, now_ms=NOW)  # fmt: skip


def test_versions_leave_room_for_expiries() -> None:
    put, next_put = store_version("1700000000000-7"), store_version("1700000000000-8")
    assert put < after(put) < next_put and after(after(put)) == after(put)
    assert complement(complement(put)) == put and complement(put) > complement(next_put)


@pytest.fixture
def worker(deployed: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = spawn_worker(deployed, "ttl-worker", log=tmp_path / "worker.log")
    warm = MemstreamStore.from_url(deployed, OWNER)
    try:  # the worker is up (and has applied a write) before a TTL starts running
        warm.put(("warm",), "up", {"v": 1})
        assert warm.get(("warm",), "up") is not None
        warm.delete(("warm",), "up")
        assert warm.get(("warm",), "up") is None
    finally:
        warm.close()
    yield proc
    assert stop_worker(proc) == 0, (tmp_path / "worker.log").read_text()


def store_keys(r: redis.Redis, name: str) -> list[bytes]:
    pattern = keys.owner_pattern(keys.partition(OWNER, 16), OWNER)
    return [k for k in r.scan_iter(match=pattern) if f":{name}:".encode() in k]


def listed(r: redis.Redis) -> list[bytes]:
    (index,) = store_keys(r, "st_ix")
    return [m for m in r.zrange(index, 0, -1) if m]


def test_sweep_removes_expired_items_and_listing_skips_them(
    r: redis.Redis, deployed: str, worker: object
) -> None:
    store = MemstreamStore.from_url(deployed, OWNER, ttl={"default_ttl": 0.02})  # 1.2 s
    try:
        store.put(("gone",), "a", {"text": "short lived"})
        store.put(("gone", "deep"), "b", {"text": "short lived"})
        store.put(("kept",), "c", {"text": "forever"}, ttl=None)
        assert store.list_namespaces() == [("gone",), ("gone", "deep"), ("kept",)]
        assert store.sweep_ttl() == 0  # nothing has expired yet
        time.sleep(1.5)
        assert store.list_namespaces() == [("kept",)]  # before any sweep
        assert len(listed(r)) == 3
        assert store.sweep_ttl() == 2
        assert store.get(("kept",), "c") is not None  # reads wait for the sweep's events
        assert listed(r) == [ref_of(("kept",), "c").encode()]
        (docs,) = store_keys(r, "st")
        assert r.hget(docs, ref_of(("gone",), "a")) is not None  # a tombstone stays...
        assert len(r.hget(docs, ref_of(("gone",), "a")) or b"") < 30  # ...small
        assert store.sweep_ttl() == 0  # a second sweep finds nothing
        assert store.get(("gone",), "a", refresh_ttl=False) is None
        store.put(("gone",), "a", {"text": "new"}, ttl=None)  # a new item, born now
        again = store.get(("gone",), "a")
        assert again is not None and again.value == {"text": "new"}
        assert again.created_at == again.updated_at
        assert store.list_namespaces() == [("gone",), ("kept",)]
    finally:
        store.close()


def test_sweeper_runs_on_its_interval_and_stops(
    r: redis.Redis, deployed: str, worker: object
) -> None:
    store = MemstreamStore.from_url(
        deployed, OWNER, ttl={"default_ttl": 0.02, "sweep_interval_minutes": 1}
    )
    try:
        store.put(("s",), "x", {"v": 1})  # the first use starts the configured sweeper
        assert store.get(("s",), "x", refresh_ttl=False) is not None
        assert len(listed(r)) == 1
        running = store.start_ttl_sweeper()  # the one already running
        assert not running.done() and store.start_ttl_sweeper() is running
        assert store.stop_ttl_sweeper(timeout=5) and running.done()
        future = store.start_ttl_sweeper(0.01)  # every 0.6 s
        assert not future.done()
        wait_until(lambda: listed(r) == [], 15, "the sweeper to remove the expired item")
        assert store.stop_ttl_sweeper(timeout=5) and future.done()
        assert store.get(("s",), "x") is None
    finally:
        store.close()


def test_created_at_is_exact_after_many_puts(r: redis.Redis, deployed: str, worker: object) -> None:
    store = MemstreamStore.from_url(deployed, OWNER)
    try:
        store.put(("c",), "k", {"n": 0})
        first = store.get(("c",), "k")
        assert first is not None
        time.sleep(0.01)
        store.batch([PutOp(("c",), "k", {"n": n}) for n in range(1, 100)])  # past the cap
        (log,) = [k for k in r.scan_iter(match=b"ms:*:log:" + OWNER.encode())]
        assert r.xlen(log) >= 100
        last = store.get(("c",), "k")
        assert last is not None and last.value == {"n": 99}
        assert last.created_at == first.created_at and last.updated_at > first.updated_at
        assert [i.created_at for i in store.search(("c",))] == [first.created_at]
    finally:
        store.close()
