"""Crash test: tier processes are SIGKILLed at random points while producers append and
workers run. Afterwards every owner's log, read through cold and hot, is exactly what was
appended (once each, in order), and a full replay equals the live projections."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from memstream.producers import Producer, Settings, keys
from memstream.producers.entry import decode_entry
from memstream.tiering import Segment
from memstream.tiering.local import LocalArchive
from memstream.workers.procs import stop_all
from memstream.workers.replay import replay_all
from tests.test_replay import snapshot
from tests.tier_util import PARTITIONS, drained, through
from tests.workers_util import spawn_worker

OWNERS = [f"crash-{i}" for i in range(6)]


def _produce(url: str, stop: threading.Event, sent: dict[str, list[tuple[str, str]]]) -> None:
    rng = random.Random(3)
    with Producer.from_url(url) as producer:
        n = 0
        while not stop.is_set():
            owner = rng.choice(OWNERS)
            content = f"{owner} message {n}"
            receipt = producer.append_message(owner, f"s{n % 3}", "user", content)
            sent[owner].append((receipt.log_id, content))
            n += 1
            if n % 50 == 0:
                time.sleep(0.005)


def _spawn_tier(url: str, root: Path, segment: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.tier_child", url, str(root), str(segment)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip


async def _crash_run(url: str, r: redis.Redis, root: Path, kills: int) -> None:
    sent: dict[str, list[tuple[str, str]]] = {o: [] for o in OWNERS}
    stop = threading.Event()
    producer = threading.Thread(target=_produce, args=(url, stop, sent), daemon=True)
    workers = [spawn_worker(url, f"crash-w{i}") for i in range(2)]
    producer.start()
    rng = random.Random(11)
    killed = 0
    try:
        while killed < kills:
            # Two tier processes at once: they must never archive the same entries twice.
            tiers = [_spawn_tier(url, root, rng.choice((8, 32, 64))) for _ in range(2)]
            for proc in tiers:
                assert proc.stdout is not None
                await asyncio.to_thread(proc.stdout.readline)  # "ready": imports are done
            await asyncio.sleep(rng.uniform(0.05, 0.6))
            for proc in tiers:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                if proc.stdout is not None:
                    proc.stdout.close()
                killed += 1
    finally:
        stop.set()
        producer.join(10)
    deadline = time.monotonic() + 60
    while not drained(r):
        assert time.monotonic() < deadline, "workers did not drain"
        await asyncio.sleep(0.05)
    stop_all(workers, 10)

    archive = LocalArchive(root)
    cold = 0
    for owner in OWNERS:
        p = keys.partition(owner, PARTITIONS)
        segments = [Segment.parse(m) for m in r.zrange(keys.manifest(p, owner), 0, -1)]
        cold += sum(s.count for s in segments)
        got = [(i, decode_entry(owner, i, f).event) for i, f in through(r, archive, owner)]
        assert [(i, e.content) for i, e in got] == sent[owner], owner  # type: ignore[attr-defined]
        assert len({i for i, _ in got}) == len(got)
    assert cold > 0, "the tier processes archived nothing: the test did not test"
    named = {Segment.parse(m).name for o in OWNERS
             for m in r.zrange(keys.manifest(keys.partition(o, PARTITIONS), o), 0, -1)}  # fmt: skip
    orphans = [o.name for o in archive.list("") if o.name not in named]
    print(f"cold entries {cold}, segments {len(named)}, unrecorded uploads {len(orphans)}")
    assert sum(map(len, sent.values())) > 500

    live = snapshot(r, 1)
    settings = Settings.from_url(url, archive_url=archive.url)
    replay_worker = spawn_worker(url, "crash-replay")
    try:
        await asyncio.to_thread(replay_all, r, settings, grace_s=0.0, catchup_timeout_s=60)
    finally:
        stop_all([replay_worker], 10)
    assert snapshot(r, 2) == live


async def test_tier_processes_killed_at_random_points(
    r: redis.Redis, deployed: str, tmp_path: Path
) -> None:
    await _crash_run(deployed, r, tmp_path / "archive", kills=12)


@pytest.mark.slow
async def test_tier_processes_killed_many_times(
    r: redis.Redis, deployed: str, tmp_path: Path
) -> None:
    await _crash_run(deployed, r, tmp_path / "archive", kills=40)
