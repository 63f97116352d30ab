"""Chaos for tensors: real worker processes SIGKILLed while they encode; every recorded
state is stored exactly once, and a replay rebuilds the same bytes."""

from __future__ import annotations

import random
import signal
import threading
import time
from typing import Any

import pytest
import redis

from memstream.producers import Producer, Settings, keys
from memstream.projections.tensors import index_key, stats_key
from memstream.workers.replay import replay_all
from tests.tensor_util import GROUPS, adversarial, structured
from tests.test_crash import _drained, _spawn
from tests.test_tensor_worker import train_and_publish

OWNERS = [f"robot-{i}" for i in range(8)]


def _produce(url: str, total: int, sent: dict[str, int]) -> None:
    rng = random.Random(3)
    pool = [*structured(400, seed=12), *adversarial(40)]
    with Producer.from_url(url) as producer:
        done = 0
        while done < total:
            for _ in range(min(100, total - done)):
                owner = rng.choice(OWNERS)
                producer.record_tensor(
                    owner, pool[rng.randrange(len(pool))], groups=GROUPS, meta={"n": done}
                )
                sent[owner] = sent.get(owner, 0) + 1
                done += 1
            time.sleep(0.02)


def _stored(r: redis.Redis, version: int) -> dict[str, list[bytes]]:
    out = {}
    for owner in OWNERS:
        pk = keys.Projection(keys.partition(owner, 16), version)
        found: Any = r.zrange(index_key(pk, owner, "state"), 0, -1)
        out[owner] = list(found)
    return out


@pytest.mark.timeout(300)
def test_sigkilled_tensor_workers_store_each_state_once(deployed: str, r: redis.Redis) -> None:
    with Producer.from_url(deployed) as producer:
        for v in structured(200, seed=13):
            producer.record_tensor("trainer", v, groups=GROUPS)
    train_and_publish(r, deployed, seed=7, epochs=1)
    sent: dict[str, int] = {}
    steady, victim = _spawn(deployed, "t-steady"), _spawn(deployed, "t-victim-0")
    thread = threading.Thread(target=_produce, args=(deployed, 3000, sent))
    thread.start()
    rng = random.Random(4)
    try:
        for k in range(3):
            time.sleep(rng.uniform(0.4, 1.0))
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            victim = _spawn(deployed, f"t-victim-{k + 1}")
        thread.join()
        deadline = time.monotonic() + 120
        while not _drained(r, 16):
            assert time.monotonic() < deadline, "workers did not drain the feeds"
            time.sleep(0.2)
        live = _stored(r, 1)
        counted = {
            o: int(r.hget(stats_key(keys.Projection(keys.partition(o, 16), 1), o), "n:state") or 0)
            for o in OWNERS
        }
        summary = replay_all(r, Settings.from_url(deployed), grace_s=0.6)
    finally:
        thread.join()
        for proc in (steady, victim):
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    assert sum(sent.values()) == 3000
    for owner in OWNERS:
        states: list[Any] = live[owner]
        ids = [m[:24] for m in states]
        assert len(ids) == len(set(ids)) == sent[owner], owner  # once each, none lost
        assert counted[owner] == sent[owner]  # the counters saw each event once too
    assert _stored(r, summary.to_version) == live  # the replay's bytes are the live ones
    assert sum(r.xlen(keys.dlq(p)) for p in range(16)) == 0
