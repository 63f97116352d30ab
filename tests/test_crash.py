"""Chaos: real worker processes SIGKILLed mid-stream, restarted, and nothing is lost or
applied twice. `make test` runs the acceptance size; `make test-all` a longer soak."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from memstream.producers import Producer, keys
from memstream.producers.events import FixOutcome, PatternObserved, SkillExecuted, StateSaved
from memstream.producers.events_messages import MessageAppended
from memstream.producers.settings import Settings
from memstream.projections.reader import Reader
from memstream.workers.replay import replay_all

CAP = 5000
SKILLS = ("deploy", "rollback")
PATTERNS = ("n-plus-one", "dead-code", "magic-number")


LOGS = Path(os.environ.get("MEMSTREAM_TEST_LOGS", "/tmp")) / "memstream-crash-test"


def _spawn(url: str, name: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MEMSTREAM_HISTORY_CAP": str(CAP)}
    LOGS.mkdir(parents=True, exist_ok=True)
    # The child keeps its own copy of the log's descriptor; ours closes on return.
    with (LOGS / f"{name}.log").open("wb") as log:
        return _popen(url, name, env, log)


def _popen(url: str, name: str, env: dict[str, str], log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "memstream.workers.cli", "worker", "--redis-url", url,
         "--consumer", name, "--block-ms", "100", "--claim-idle-ms", "500", "--batch", "100"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )  # fmt: skip


def _drained(r: redis.Redis, partitions: int) -> bool:
    for p in range(partitions):
        feed = keys.feed(p)
        [group] = [g for g in r.xinfo_groups(feed) if g["name"] == b"v1"]
        if int(group["pending"]) or r.xrange(
            feed, f"({group['last-delivered-id'].decode()}", count=1
        ):
            return False
    return True


def _produce(url: str, owners: list[str], total: int, expected: dict[str, list[Any]]) -> None:
    """Append in paced chunks so that kills land while workers are busy."""
    rng = random.Random(1)
    with Producer.from_url(url) as producer:
        sent = 0
        while sent < total:
            chunk = []
            for _ in range(min(250, total - sent)):
                owner = rng.choice(owners)
                roll = rng.random()
                if roll < 0.1:
                    event: Any = StateSaved(state={"n": sent})
                    chunk.append((owner, event))
                elif roll < 0.2:
                    # Counters would show any double apply: stats must stay exact.
                    event = SkillExecuted(
                        name=rng.choice(SKILLS), success=rng.random() < 0.7,
                        duration_s=round(rng.uniform(0, 2), 6),
                    )  # fmt: skip
                    chunk.append((owner, event))
                elif roll < 0.25:
                    event = PatternObserved(pattern=rng.choice(PATTERNS), issue_kind="smell")
                    chunk.append((owner, event))
                elif roll < 0.3:
                    event = FixOutcome(pattern=rng.choice(PATTERNS), accepted=rng.random() < 0.5)
                    chunk.append((owner, event))
                else:
                    event = MessageAppended(role="user", content=f"{owner}:{sent}")
                    chunk.append((owner, event, "s1"))
                expected.setdefault(owner, []).append(event)
                sent += 1
            producer.append_many(chunk)
            time.sleep(0.05)


def _snapshot(url: str, owners: list[str]) -> dict[str, Any]:
    with Reader.from_url(url) as reader:
        return {
            o: (
                reader.history(o, "s1", last=CAP), reader.state(o), reader.sessions(o),
                [reader.skill_stats(o, s) for s in SKILLS], reader.insights(o, top=10),
                reader.fix_outcomes(o, last=1000),
            )
            for o in owners
        }  # fmt: skip


@pytest.mark.parametrize(
    ("total", "kills"),
    [
        pytest.param(20_000, 3, id="acceptance"),
        pytest.param(100_000, 10, id="soak", marks=pytest.mark.slow),
    ],
)
@pytest.mark.timeout(600)
def test_sigkilled_workers_lose_nothing_and_apply_once(
    deployed: str, r: redis.Redis, total: int, kills: int
) -> None:
    owners = [f"agent-{i}" for i in range(50)]
    expected: dict[str, list[Any]] = {}
    steady = _spawn(deployed, "steady")
    victim = _spawn(deployed, "victim-0")
    producer = threading.Thread(target=_produce, args=(deployed, owners, total, expected))
    producer.start()
    rng = random.Random(2)
    try:
        for k in range(kills):
            time.sleep(rng.uniform(0.3, 1.2))
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            victim = _spawn(deployed, f"victim-{k + 1}")
        producer.join()
        deadline = time.monotonic() + 300
        while not _drained(r, 16):
            assert time.monotonic() < deadline, "workers did not drain the feeds"
            time.sleep(0.2)
        # The live projections must equal a clean replay's (workers keep running: the
        # replay waits for them to carry the new version past its cutoff).
        before = _snapshot(deployed, owners)
        summary = replay_all(r, Settings.from_url(deployed, history_cap=CAP), grace_s=0.6)
        assert summary.to_version == 2
        assert _snapshot(deployed, owners) == before
    finally:
        producer.join()
        for proc in (steady, victim):
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)

    assert sum(len(v) for v in expected.values()) == total
    with Reader.from_url(deployed) as reader:
        for owner, events in expected.items():
            messages = [e.content for e in events if isinstance(e, MessageAppended)]
            history = reader.history(owner, "s1", last=CAP)
            assert [m["content"] for m in history] == messages, owner
            states = [e.state for e in events if isinstance(e, StateSaved)]
            assert reader.state(owner) == (states[-1] if states else None)
            _check_skills_and_patterns(reader, owner, events)
    assert sum(r.xlen(keys.dlq(p)) for p in range(16)) == 0


def _check_skills_and_patterns(reader: Reader, owner: str, events: list[Any]) -> None:
    """Exact counts: a double-applied event would add one, a lost one would miss one."""
    for name in SKILLS:
        runs = [e for e in events if isinstance(e, SkillExecuted) and e.name == name]
        stats = reader.skill_stats(owner, name)
        assert stats["executions"] == len(runs), (owner, name)
        assert stats["successes"] == sum(e.success for e in runs)
        micros = sum(round(e.duration_s * 1_000_000) for e in runs)
        if runs:
            assert stats["mean_duration_s"] == micros / len(runs) / 1_000_000
            newest = sorted(round(e.duration_s * 1_000_000) for e in runs[-1000:])
            assert stats["p95_duration_s"] == newest[-(-95 * len(newest) // 100) - 1] / 1_000_000
    found = {p["pattern"]: p for p in reader.insights(owner, top=10)["patterns"]}
    for pattern in PATTERNS:
        seen = sum(1 for e in events if isinstance(e, PatternObserved) and e.pattern == pattern)
        fixes = [e.accepted for e in events if isinstance(e, FixOutcome) and e.pattern == pattern]
        got = found.get(pattern, {"frequency": 0, "accepted": 0, "rejected": 0})
        if seen:
            assert got["frequency"] == seen, (owner, pattern)
            assert (got["accepted"], got["rejected"]) == (sum(fixes), len(fixes) - sum(fixes))
