"""Conversation search past the hot tiers: a semantic hit whose message is only in a
cold archive (out of the history window and trimmed from the hot log) comes back with
its body; a cleared one does not."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from memstream.producers import AsyncProducer, Settings
from memstream.projections.reader import AsyncReader, Reader
from tests.tier_util import hot, local_archive, tier_all
from tests.workers_util import running_worker

OWNER = "agent.cold"


@pytest.fixture
def archive_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"file://{tmp_path}/archive"
    monkeypatch.setenv("MEMSTREAM_ARCHIVE_URL", url)
    return url


async def test_semantic_hit_archived_to_cold_comes_back_with_its_body(
    r: redis.Redis, deployed: str, archive_url: str, tmp_path: Path
) -> None:
    worker_settings = {"embed_messages": True, "history_cap": 2}
    async with (
        running_worker(deployed, settings=worker_settings),
        AsyncProducer.from_url(deployed) as producer,
    ):
        await producer.append_message(OWNER, "s1", "user", "my database ran out of disk")
        for n in range(4):
            await producer.append_message(OWNER, "s1", "user", f"lunch plans number {n}")
        await producer.append_message(OWNER, "s2", "user", "the disk filled up entirely")
        await producer.clear_history(OWNER, "s2")
        last = await producer.append_message(OWNER, "s2", "user", "train times to Porto")
        async with AsyncReader.from_url(deployed, embed_messages=True) as reader:
            await reader.wait(last, timeout=30)
    tier_all(r, local_archive(tmp_path), older_than_s=None, keep_last=1, max_entries=4)
    assert len(hot(r, OWNER)) == 1  # the disk message is only in the archive now
    settings = Settings.from_url(deployed, archive_url=archive_url, embed_messages=True)
    async with AsyncReader.from_settings(settings) as reader:
        near = await reader.search_messages(OWNER, "storage full", mode="semantic", limit=10)
        contents = [h.message["content"] for h in near]
        assert contents[0] == "my database ran out of disk"
        assert near[0].session == "s1" and near[0].message["role"] == "user"
        # Cleared before the last message of s2: not returned though still archived.
        assert "the disk filled up entirely" not in contents
        only = await reader.search_messages(OWNER, "storage full", "s1", mode="semantic")
        assert {h.session for h in only} == {"s1"}
        assert only[0].log_id == near[0].log_id
    with Reader(settings) as blocking:
        again = blocking.search_messages(OWNER, "storage full", mode="semantic", limit=1)
        assert [h.log_id for h in again] == [near[0].log_id]
