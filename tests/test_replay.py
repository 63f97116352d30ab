"""Replay: blue/green rebuild under live appends, clean-up, the lock and the CLI.

The oracle is a from-scratch fold: every log folded in log order with ``ms_write`` into a
scratch version, compared key by key (contents and expiry) with the rebuilt version.
"""

from __future__ import annotations

import asyncio
import io
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import pytest
import redis

from memstream.producers import AsyncProducer, Producer, Settings, keys
from memstream.producers.codec import DecodeError
from memstream.producers.connection import sync_client
from memstream.producers.entry import StoredEvent, decode_entry
from memstream.producers.events import StateSaved
from memstream.producers.events_messages import MessageAppended
from memstream.projections.base import ApplyContext, Projection
from memstream.projections.ops import Writes, write_command
from memstream.projections.registry import default_projections
from memstream.workers import replay as replay_mod
from memstream.workers.cli import main
from memstream.workers.plan import Planner
from memstream.workers.replay import ReplayError, replay_all
from tests.workers_util import running_worker

PARTITIONS = 16
SCRATCH = 99
OWNERS = [f"agent-{i}" for i in range(20)]
SKIP = {"stats", "cutoff", "fences"}  # partition-wide bookkeeping, not a fold's output


class CountMessages(Projection):
    """A counter: the one kind of write that a second application would visibly break."""

    name: ClassVar[str] = "count"
    handles: ClassVar[frozenset[str]] = frozenset({"message.appended"})

    def apply(self, event: StoredEvent, ctx: ApplyContext, writes: Writes) -> None:
        writes.hincr(ctx.keys.key("count", event.owner), "messages", 1)


def _id(raw: bytes | str) -> tuple[int, int]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq)


READ: dict[str, Callable[[redis.Redis, bytes], Any]] = {
    "hash": lambda r, k: sorted(r.hgetall(k).items()),
    "zset": lambda r, k: r.zrange(k, 0, -1, withscores=True),
    "string": lambda r, k: r.get(k),
    "stream": lambda r, k: [f for _, f in r.xrange(k)],
}


def _value(r: redis.Redis, key: bytes) -> tuple[Any, ...]:
    kind = r.type(key).decode()
    return kind, READ[kind](r, key), r.pexpiretime(key)


def snapshot(r: redis.Redis, version: int, owner: str | None = None) -> dict[str, Any]:
    """Every projection key of ``version`` (minus bookkeeping), version-less name -> value."""
    out = {}
    for raw in r.scan_iter(match=keys.version_pattern(version), count=1000):
        key = raw.decode()
        p, _ = keys.version_of_key(key)
        tail = key[len(keys.version_prefix(p, version)) :]
        if tail.split(":")[0] in SKIP:
            continue
        if owner is not None and keys.key_owner(key, p, version) != owner:
            continue
        out[f"{p}:{tail}"] = _value(r, raw)
    return out


def expected(
    r: redis.Redis, projections: Sequence[Projection] | None = None, owner: str | None = None
) -> dict[str, Any]:
    """Fold every log from scratch, one event at a time, into a scratch version."""
    planner = Planner(projections or default_projections(), Settings(), 5)
    now = int(time.time() * 1000)
    for raw in r.scan_iter(match="ms:{*}:log:*", count=1000):
        key = raw.decode()
        p = int(key[4 : key.index("}")])
        log_owner = key.split(":log:", 1)[1]
        ctx = ApplyContext(keys.Projection(p, SCRATCH), Settings(), now)
        for log_id, fields in r.xrange(raw):
            try:
                event = decode_entry(log_owner, log_id.decode(), fields)
            except DecodeError:
                continue
            ops = [op for op in planner.event_writes(event, ctx).ops if op[0] != "SPUB"]
            if ops:
                replay_mod.run(r, write_command([ops]))
    out = snapshot(r, SCRATCH, owner)
    replay_mod.delete_version(r, SCRATCH)
    return out


def drained(r: redis.Redis, version: int) -> bool:
    """Group v<version> has applied everything on every feed."""
    for p in range(PARTITIONS):
        feed = keys.feed(p)
        found = [g for g in r.xinfo_groups(feed) if g["name"] == keys.group(version).encode()]
        if not found:
            return False
        last = r.xinfo_stream(feed)["last-generated-id"]
        if int(found[0]["pending"]) or _id(found[0]["last-delivered-id"]) < _id(last):
            return False
    return True


async def wait_drained(r: redis.Redis, version: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not drained(r, version):
        assert time.monotonic() < deadline, f"v{version} did not drain"
        await asyncio.sleep(0.05)


async def produce(url: str, stop: asyncio.Event, owners: Sequence[str], seed: int = 7) -> int:
    """Append a mix of events until ``stop``; return how many."""
    rng = random.Random(seed)
    sent = 0
    async with AsyncProducer.from_url(url) as producer:
        while not stop.is_set():
            owner, session = rng.choice(owners), f"s{rng.randrange(3)}"
            kind = rng.randrange(10)
            if kind < 4:
                await producer.append_message(owner, session, "user", f"m{sent}")
            elif kind < 6:
                await producer.save_state(owner, {"n": sent})
            elif kind == 6:
                await producer.start_session(owner, session, previous="s0")
            elif kind == 7:
                await producer.set_session_data(owner, session, "k", sent)
            elif kind == 8:
                await producer.record_step(owner, f"a{sent}", session=session)
            else:
                await producer.clear_history(owner, session)
            sent += 1
            if sent % 10 == 0:
                await asyncio.sleep(0.001)  # let the worker and the replay thread breathe
    return sent


def seed(url: str, owners: Sequence[str], n: int, seed_: int = 1) -> None:
    rng = random.Random(seed_)
    with Producer.from_url(url) as producer:
        items: list[Any] = []
        for i in range(n):
            owner, session = rng.choice(owners), f"s{rng.randrange(3)}"
            if i % 5 == 4:
                items.append((owner, StateSaved(state={"seed": i})))
            else:
                items.append((owner, MessageAppended(role="user", content=f"seed {i}"), session))
        for start in range(0, len(items), 500):
            producer.append_many(items[start : start + 500])


def no_version_left(r: redis.Redis, version: int) -> bool:
    return not list(r.scan_iter(match=f"ms:{{*}}:v{version}:*", count=1000))


async def replay_under_load(url: str, r: redis.Redis, expect_from: int) -> replay_mod.ReplaySummary:
    stop = asyncio.Event()
    producer = asyncio.create_task(produce(url, stop, OWNERS, seed=expect_from))
    await asyncio.sleep(0.3)  # appends are flowing before the replay begins
    with sync_client(Settings.from_url(url)) as client:
        summary = await asyncio.to_thread(
            replay_all, client, Settings.from_url(url), grace_s=0.3, catchup_timeout_s=60
        )
    await asyncio.sleep(0.2)  # and keep flowing after the flip
    stop.set()
    assert await producer > 0
    assert (summary.from_version, summary.to_version) == (expect_from, expect_from + 1)
    await wait_drained(r, expect_from + 1)
    return summary


async def test_replay_under_live_appends_matches_a_fresh_fold(
    deployed: str, r: redis.Redis
) -> None:
    seed(deployed, OWNERS, 3000)
    async with running_worker(deployed):
        await wait_drained(r, 1)
        summary = await replay_under_load(deployed, r, 1)
    assert summary.stats.events >= 3000 and summary.stats.owners == len(OWNERS)
    meta = r.hgetall(keys.META)
    assert meta[b"version"] == b"2" and b"next_version" not in meta and b"retiring" not in meta
    assert no_version_left(r, 1)
    assert not list(r.scan_iter(match="ms:{*}:v2:cutoff"))
    assert [g["name"] for g in r.xinfo_groups(keys.feed(0))] == [b"v2"]
    got = snapshot(r, 2)
    assert got == expected(r)
    assert len(got) > 100


async def test_replay_twice_in_a_row(deployed: str, r: redis.Redis) -> None:
    seed(deployed, OWNERS, 500)
    async with running_worker(deployed):
        await replay_under_load(deployed, r, 1)
        await replay_under_load(deployed, r, 2)
    assert r.hget(keys.META, "version") == b"3"
    assert no_version_left(r, 1) and no_version_left(r, 2)
    assert snapshot(r, 3) == expected(r)


def test_replay_cleans_up_after_a_replay_that_died(deployed: str, r: redis.Redis) -> None:
    seed(deployed, OWNERS, 200)
    # A replay died after starting v2 and writing some of it.
    for p in range(PARTITIONS):
        begin = ("FCALL", "ms_replay_begin", 3, keys.feed(p), keys.heads(p),
                 keys.cutoff(p, 2), "v2")  # fmt: skip
        replay_mod.run(r, begin)
    r.hset(keys.META, "next_version", 2)
    stray = keys.Projection(0, 2).key("hist", "ghost", "s1")
    r.zadd(stray, {"x": 0})
    summary = replay_all(r, Settings(), grace_s=0.05)
    assert summary.to_version == 2 and not r.exists(stray)
    assert no_version_left(r, 1)
    assert snapshot(r, 2) == expected(r)


def test_only_one_replay_at_a_time(deployed: str, r: redis.Redis) -> None:
    lock = r.lock(keys.REPLAY_LOCK, timeout=5)
    assert lock.acquire(blocking=False)
    with pytest.raises(ReplayError, match="another replay"):
        replay_all(r, Settings(), grace_s=0)
    lock.release()


def test_replay_that_cannot_catch_up_leaves_n_serving(
    deployed: str, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(deployed, OWNERS, 50)
    fold = replay_mod._fold_all

    def fold_then_append(*args: Any, **kwargs: Any) -> None:
        fold(*args, **kwargs)
        with Producer.from_url(deployed) as producer:  # after the cutoff, and no worker runs
            producer.save_state("alice", {"late": True})

    monkeypatch.setattr(replay_mod, "_fold_all", fold_then_append)
    with pytest.raises(ReplayError, match="did not catch up"):
        replay_all(r, Settings(), grace_s=0, catchup_timeout_s=0.3)
    meta = r.hgetall(keys.META)
    assert meta[b"version"] == b"1" and b"next_version" not in meta
    assert no_version_left(r, 2)
    assert [g["name"] for g in r.xinfo_groups(keys.feed(0))] == [b"v1"]


def test_cli_replay(deployed: str, r: redis.Redis, capsys: pytest.CaptureFixture[str]) -> None:
    seed(deployed, OWNERS, 100)
    assert main(["replay", "--yes", "--redis-url", deployed, "--grace-s", "0.05"]) == 0
    out = capsys.readouterr().out
    assert "replayed v1 -> v2" in out and "events/s" in out
    assert r.hget(keys.META, "version") == b"2"
    assert main(["replay", "--owner", "agent-1", "--yes", "--redis-url", deployed]) == 0
    assert "rebuilt owner agent-1 in v2" in capsys.readouterr().out


def test_cli_replay_without_yes_and_no_tty_refuses(
    deployed: str,
    r: redis.Redis,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["replay", "--redis-url", deployed]) == 2
    assert "--yes" in capsys.readouterr().err
    assert r.hget(keys.META, "version") == b"1"
