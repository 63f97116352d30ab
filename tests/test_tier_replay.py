"""Replay from cold: after tiering, a full replay and an owner replay produce exactly the
projections that existed before tiering (every key compared, contents and expiry)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis

from memstream.producers import Producer, Settings, keys
from memstream.workers.replay import replay_all
from memstream.workers.replay_owner import replay_owner
from tests.test_replay import snapshot
from tests.tier_util import PARTITIONS, drain, fill, hot, local_archive, tier_all
from tests.workers_util import running_worker

OWNERS = ["ann", "ben", "cleo", "dev"]


def mixed(url: str) -> None:
    """Every kind of memory, so each projection's fold is exercised from cold."""
    with Producer.from_url(url) as producer:
        for i, owner in enumerate(OWNERS):
            producer.start_session(owner, "s1")
            producer.save_state(owner, {"n": i})
            producer.set_session_data(owner, "s1", "lang", "en")
            producer.record_step(owner, "look", f"a door {i}", session="s1")
            producer.append_message(owner, "s1", "user", "before the clear")
            producer.clear_history(owner, "s1")
            producer.save_state(owner, {"n": i + 10})


@pytest.fixture
def tiered(r: redis.Redis, deployed: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"file://{tmp_path}/archive"
    monkeypatch.setenv("MEMSTREAM_ARCHIVE_URL", url)
    return url


async def test_full_replay_after_tiering_equals_before(
    r: redis.Redis, deployed: str, tiered: str, tmp_path: Path
) -> None:
    mixed(deployed)
    fill(deployed, OWNERS, 250, sessions=3)
    await drain(deployed, r)
    before = snapshot(r, 1)
    assert len(before) > 20
    summary = tier_all(r, local_archive(tmp_path), max_entries=100)
    assert summary.errors == [] and summary.entries == len(OWNERS) * 257
    assert all(hot(r, o) == [] for o in OWNERS)

    settings = Settings.from_url(deployed, archive_url=tiered)
    async with running_worker(deployed):  # the new group must catch up on the feed
        result = await asyncio.to_thread(replay_all, r, settings, grace_s=0.0, catchup_timeout_s=30)
    assert result.stats.events == len(OWNERS) * 257
    assert snapshot(r, 2) == before


async def test_owner_replay_after_tiering_equals_before(
    r: redis.Redis, deployed: str, tiered: str, tmp_path: Path
) -> None:
    mixed(deployed)
    fill(deployed, OWNERS, 120)
    await drain(deployed, r)
    archive = local_archive(tmp_path)
    tier_all(r, archive, older_than_s=None, keep_last=40)  # half cold, half hot
    assert all(len(hot(r, o)) == 40 for o in OWNERS)
    before = snapshot(r, 1, "ben")
    settings = Settings.from_url(deployed, archive_url=tiered)
    p = keys.partition("ben", PARTITIONS)
    r.unlink(*[k for k in r.scan_iter(match=keys.owner_keys_pattern(p, 1, "ben"))])
    assert snapshot(r, 1, "ben") != before
    summary = replay_owner(r, "ben", settings)
    assert summary.stats.events == 127
    assert snapshot(r, 1, "ben") == before
