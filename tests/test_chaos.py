"""Chaos with real processes (issue 10): Redis SIGKILLed and restarted from its AOF,
Redis frozen with SIGSTOP, Redis shut down while the producer's outbox keeps the appends,
and a storm of worker SIGKILLs, all under load with worker processes.

Every test ends the same way: the feeds drain, every acknowledged append is applied
exactly once (histories in order, skill counters exact), and the live projections
equal a clean replay. The figures (tried, acknowledged, lost, duplicated, recovery) are
printed; run with ``-s`` to see them.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from memstream.producers import Producer, keys
from memstream.producers.errors import MemstreamError
from memstream.producers.events import SkillExecuted, StateSaved
from memstream.producers.events_messages import MessageAppended
from memstream.producers.settings import Settings
from memstream.projections.reader import Reader
from memstream.workers.deploy import init
from memstream.workers.replay import replay_all
from tests.chaos_load import Load
from tests.redis_server import RedisServer
from tests.test_crash import CAP, SKILLS, _check_skills_and_patterns, _drained, _snapshot
from tests.test_outbox import drained
from tests.workers_util import PROBLEMS, spawn_worker, stop_worker, wait_until, warnings_in

ENV = {"MEMSTREAM_HISTORY_CAP": str(CAP)}
ARGS = ("--claim-idle-ms", "3000", "--batch", "100")
"""Entries idle 3 s are taken over: quick enough for a storm of kills, yet a live worker
starved of CPU on a crowded test machine is not robbed of its batch again and again
(each take-over counts a delivery; past --max-deliveries an entry is applied alone,
workers/suspects.py, which costs a round trip per entry)."""


@pytest.fixture
def aof(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", "--appendonly", "yes", "--appendfsync", "always")
    client = redis.Redis(port=server.port)
    init(client, partitions=16)
    client.close()
    yield server
    server.stop()


def _workers(url: str, logs: Path, names: list[str]) -> dict[str, subprocess.Popen[bytes]]:
    return {n: spawn_worker(url, n, *ARGS, log=logs / f"{n}.log", env=ENV) for n in names}


def _recovery_s(url: str, tag: str) -> float:
    """Seconds from a restart until a fresh append is visible: the runtime is back."""
    start = time.monotonic()
    with Producer.from_url(url) as producer:
        while True:
            try:
                event = MessageAppended(role="user", content=tag)
                producer.append_many([(f"probe-{tag}", event, "s", f"probe-{tag}")])
                break
            except (redis.RedisError, MemstreamError, OSError):
                time.sleep(0.05)
    with Reader.from_url(url) as reader:
        wait_until(lambda: bool(reader.history(f"probe-{tag}", "s")), 60, "the probe")
    return time.monotonic() - start


def _count(load: Load, url: str) -> dict[str, int]:
    """Lost and duplicated messages and skill runs, counted before the exact checks."""
    lost = duplicated = 0
    with Reader.from_url(url) as reader:
        for owner, events in load.expected.items():
            want = Counter(e.content for e in events if isinstance(e, MessageAppended))
            got = Counter(m["content"] for m in reader.history(owner, "s1", last=CAP))
            lost += sum((want - got).values())
            duplicated += sum((got - want).values())
            for name in SKILLS:
                runs = sum(1 for e in events if isinstance(e, SkillExecuted) and e.name == name)
                seen = reader.skill_stats(owner, name)["executions"]
                lost += max(0, runs - seen)
                duplicated += max(0, seen - runs)
    return {"lost": lost, "duplicated": duplicated}


def _verify(r: redis.Redis, url: str, load: Load, figures: dict[str, Any]) -> None:
    figures["drain_s"] = round(wait_until(lambda: _drained(r, 16), 300, "the feeds to drain"), 2)
    figures |= {"tried": load.total, "acknowledged": load.acknowledged,
                "failed_calls": load.failed_calls, **_count(load, url),
                "dlq": sum(int(r.xlen(keys.dlq(p))) for p in range(16))}  # fmt: skip
    if figures["dlq"]:
        reasons = Counter(
            f[b"reason"][:40] for p in range(16) for _, f in r.xrange(keys.dlq(p), count=1000)
        )
        print("dead letters:", reasons)
    print("chaos figures:", figures)
    assert load.acknowledged == load.total
    assert (figures["lost"], figures["duplicated"]) == (0, 0)
    with Reader.from_url(url) as reader:
        for owner, events in load.expected.items():
            messages = [e.content for e in events if isinstance(e, MessageAppended)]
            assert [m["content"] for m in reader.history(owner, "s1", last=CAP)] == messages
            states = [e.state for e in events if isinstance(e, StateSaved)]
            assert reader.state(owner) == (states[-1] if states else None)
            _check_skills_and_patterns(reader, owner, events)
    assert sum(int(r.xlen(keys.dlq(p))) for p in range(16)) == 0
    before = _snapshot(url, load.owners)
    replay_all(r, Settings.from_url(url, history_cap=CAP), grace_s=0.6)
    assert _snapshot(url, load.owners) == before


def _finish(workers: dict[str, subprocess.Popen[bytes]], logs: Path, outages: int) -> None:
    for name, proc in workers.items():
        assert proc.poll() is None, f"worker {name} died: see {logs}/{name}.log"
    for proc in workers.values():
        assert stop_worker(proc) == 0
    for name in workers:
        text = (logs / f"{name}.log").read_text()
        for problem in PROBLEMS:
            assert problem not in text, text[-3000:]
        assert len(warnings_in(text)) <= 2 * outages, warnings_in(text)


@pytest.mark.parametrize(
    "total",
    [pytest.param(6000, id="short"), pytest.param(60_000, id="long", marks=pytest.mark.slow)],
)
@pytest.mark.timeout(600)
def test_redis_sigkilled_twice_under_load(aof: RedisServer, tmp_path: Path, total: int) -> None:
    url, r = aof.url, redis.Redis(port=aof.port)
    workers = _workers(url, tmp_path, ["w1", "w2"])
    # Paced so that both kills land while appends go on (checked below).
    load = Load(url, [f"agent-{i}" for i in range(30)], total, chunk=100, pause_s=0.1)
    thread = load.start()
    figures: dict[str, Any] = {"recovery_s": [], "acknowledged_at_kill": []}
    try:
        for k in range(2):
            time.sleep(1.5 if total < 10_000 else 8)
            assert not load.done.is_set(), "the load ended before the kill: make it longer"
            figures["acknowledged_at_kill"].append(load.acknowledged)
            aof.kill()
            time.sleep(1.0)
            aof.restart()
            figures["recovery_s"].append(round(_recovery_s(url, f"kill{k}"), 2))
        thread.join(timeout=300)
        _verify(r, url, load, figures)
        _finish(workers, tmp_path, outages=2)
    finally:
        for proc in workers.values():
            proc.kill()
        r.close()


@pytest.mark.parametrize(
    "frozen_s",
    [pytest.param(3.0, id="short"), pytest.param(10.0, id="long", marks=pytest.mark.slow)],
)
@pytest.mark.timeout(600)
def test_redis_frozen_under_load(aof: RedisServer, tmp_path: Path, frozen_s: float) -> None:
    url, r = aof.url, redis.Redis(port=aof.port)
    workers = _workers(url, tmp_path, ["w1", "w2"])
    load = Load(url, [f"agent-{i}" for i in range(30)], 5000, chunk=100, pause_s=0.1)
    thread = load.start()
    figures: dict[str, Any] = {"frozen_s": frozen_s}
    try:
        time.sleep(1.5)
        assert not load.done.is_set(), "the load ended before the freeze: make it longer"
        figures["acknowledged_at_freeze"] = load.acknowledged
        aof.freeze()
        time.sleep(frozen_s)
        aof.thaw()
        figures["recovery_s"] = round(_recovery_s(url, "thaw"), 2)
        thread.join(timeout=300)
        _verify(r, url, load, figures)
        _finish(workers, tmp_path, outages=1)
    finally:
        aof.thaw()
        for proc in workers.values():
            proc.kill()
        r.close()


@pytest.mark.parametrize(
    "down_s",
    [pytest.param(5.0, id="short"), pytest.param(30.0, id="long", marks=pytest.mark.slow)],
)
@pytest.mark.timeout(600)
def test_redis_shut_down_with_the_outbox(aof: RedisServer, tmp_path: Path, down_s: float) -> None:
    url, r = aof.url, redis.Redis(port=aof.port)
    workers = _workers(url, tmp_path, ["w1", "w2"])
    outbox = tmp_path / "outbox.db"
    # Paced to outlast the outage: appends go on while Redis is away (into the outbox).
    load = Load(url, [f"agent-{i}" for i in range(30)], 4000 + int(down_s * 400), chunk=50,
                pause_s=0.1, outbox=str(outbox), append_deadline_s=1.0)  # fmt: skip
    thread = load.start()
    figures: dict[str, Any] = {"down_s": down_s}
    try:
        time.sleep(1.5)
        figures["acknowledged_before"] = load.acknowledged
        aof.stop()  # SHUTDOWN: the AOF is synced, then the process exits
        time.sleep(down_s)
        figures["acknowledged_while_down"] = load.acknowledged - figures["acknowledged_before"]
        aof.start()
        restarted = time.monotonic()
        drained(outbox, timeout=120)
        figures["outbox_flushed_s"] = round(time.monotonic() - restarted, 2)
        assert not load.done.is_set(), "the load ended before Redis came back: make it longer"
        load.done.wait(timeout=300)
        drained(outbox, timeout=120)
        load.flushed.set()
        thread.join(timeout=60)
        figures["pending"] = load.pending
        assert load.pending > 0, "the outage never reached the producer"
        assert figures["acknowledged_while_down"] > 0
        _verify(r, url, load, figures)
        _finish(workers, tmp_path, outages=1)
    finally:
        load.flushed.set()
        for proc in workers.values():
            proc.kill()
        r.close()


@pytest.mark.parametrize(
    ("total", "kills"),
    [
        pytest.param(25_000, 12, id="short"),
        pytest.param(1_000_000, 100, id="long", marks=pytest.mark.slow),
    ],
)
@pytest.mark.timeout(3600)
def test_worker_sigkill_storm(deployed: str, r: redis.Redis, tmp_path: Path, total: int,
                              kills: int) -> None:  # fmt: skip
    names = ["w0", "w1", "w2"]
    workers = _workers(deployed, tmp_path, names)
    # Enough owners that no session outgrows the history cap (else the exact checks
    # would count capped messages as lost): about 1,700 messages each in the long run.
    owners = max(60, total // 3000)
    load = Load(deployed, [f"agent-{i}" for i in range(owners)], total, chunk=250,
                pause_s=0.01)  # fmt: skip
    thread = load.start()
    started = time.monotonic()
    done = 0
    try:
        # Kill in turn, spread over the load; a replacement takes the victim's place.
        while done < kills:
            time.sleep(0.3)
            if load.done.is_set() and done >= kills:
                break
            victim = names[done % 3]
            workers[victim].send_signal(signal.SIGKILL)
            workers[victim].wait()
            name = f"{victim}-{done}"
            workers[name] = spawn_worker(deployed, name, *ARGS, log=tmp_path / f"{name}.log",
                                         env=ENV)  # fmt: skip
            del workers[victim]
            names[done % 3] = name
            done += 1
        thread.join(timeout=3000)
        _verify(r, deployed, load, {"kills": done, "load_s": round(time.monotonic() - started)})
        _finish(workers, tmp_path, outages=0)
    finally:
        for proc in workers.values():
            proc.kill()
