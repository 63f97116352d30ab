"""Keyword conversation search over the whole history (``cold=True``): messages older
than the hot window come from the log and the archive (local folder and S3), BM25 scores
hot and cold with one set of statistics (what ``history()`` paging returns, scored by the
reference), cleared messages stay out, the walk is capped, and forget hides every
archived message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis

from memstream.producers import AsyncProducer, InvalidInputError, Settings
from memstream.projections.reader import AsyncReader, Reader
from memstream.projections.reads_vectors import bm25, message_text
from memstream.tiering import open_archive
from memstream.workers.cli import main
from tests.s3_server import S3Server, s3_env, s3_server  # noqa: F401
from tests.tier_util import drain, hot, tier_all
from tests.workers_util import running_worker

OWNER = "agent.kwcold"
CAP = 2


@pytest.fixture(params=["local", "s3"])
def reader_settings(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    deployed: str,
) -> Settings:  # fmt: skip
    """A reader's settings with the archive (also in the environment, for forget)."""
    extra: dict[str, Any] = {}
    if request.param == "local":
        url = f"file://{tmp_path}/archive"
    else:
        server: S3Server = request.getfixturevalue("s3_env")
        url = f"s3://{server.new_bucket()}/tier"
        extra["s3_endpoint_url"] = server.url
        monkeypatch.setenv("MEMSTREAM_S3_ENDPOINT_URL", server.url)
    monkeypatch.setenv("MEMSTREAM_ARCHIVE_URL", url)
    return Settings.from_url(deployed, archive_url=url, history_cap=CAP, **extra)


async def _fill(deployed: str) -> None:
    async with (
        running_worker(deployed, settings={"history_cap": CAP}),
        AsyncProducer.from_url(deployed) as producer,
    ):
        await producer.append_message(OWNER, "s1", "user", "my database ran out of disk")
        await producer.append_message(OWNER, "s1", "assistant", "clean the disk cache daily")
        for n in range(4):
            await producer.append_message(OWNER, "s1", "user", f"lunch plans number {n}")
        await producer.append_message(OWNER, "s2", "user", "the disk filled up entirely")
        await producer.clear_history(OWNER, "s2")
        await producer.append_message(OWNER, "s2", "user", "a disk shop near Porto")
        last = await producer.append_message(OWNER, "s2", "user", "train times to Porto")
        async with AsyncReader.from_url(deployed) as reader:
            await reader.wait(last, timeout=30)


def _archive(settings: Settings) -> Any:
    assert settings.archive_url is not None
    return open_archive(settings, settings.archive_url)


async def _reference(reader: AsyncReader, query: str) -> dict[str, float]:
    """BM25 over every message history paging returns, per log id (the hits above 0)."""
    every = [m for s in await reader.sessions(OWNER)
             for m in await reader.history(OWNER, s["session"], last=10_000)]  # fmt: skip
    scores = bm25(query, [message_text(m) for m in every])
    return {m["log_id"]: round(s, 9) for m, s in zip(every, scores, strict=True) if s > 0}


async def test_cold_keyword_search_covers_the_archived_history(
    r: redis.Redis, deployed: str, reader_settings: Settings
) -> None:
    await _fill(deployed)
    tier_all(r, _archive(reader_settings), older_than_s=None, keep_last=1, max_entries=4)
    assert len(hot(r, OWNER)) == 1  # the disk messages are only in the archive now
    async with AsyncReader.from_settings(reader_settings) as reader:
        # Hot only: s1's window is two lunch messages, s2's has the Porto shop.
        assert [h.message["content"] for h in await reader.search_messages(OWNER, "disk")] == [
            "a disk shop near Porto"
        ]
        hits = await reader.search_messages(OWNER, "disk", cold=True, limit=100)
        contents = [h.message["content"] for h in hits]
        assert set(contents) == {
            "my database ran out of disk", "clean the disk cache daily", "a disk shop near Porto"
        }, "the s2 message before its clear stays out"  # fmt: skip
        assert {h.log_id: round(h.score, 9) for h in hits} == await _reference(reader, "disk")
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        first = next(h for h in hits if h.message["content"] == "my database ran out of disk")
        assert first.session == "s1" and first.message["role"] == "user"
        assert first.message["log_id"] == first.log_id and first.message["ts"] > 0
        only = await reader.search_messages(OWNER, "disk", "s1", cold=True)
        assert {h.session for h in only} == {"s1"} and len(only) == 2
        # The cap counts log entries read: one entry reaches no older disk message.
        capped = await reader.search_messages(OWNER, "disk", cold=True, cold_limit=1)
        assert [h.message["content"] for h in capped] == ["a disk shop near Porto"]
    with Reader(reader_settings) as blocking:
        again = blocking.search_messages(OWNER, "disk", cold=True, limit=100)
        assert [(h.log_id, h.score) for h in again] == [(h.log_id, h.score) for h in hits]


async def test_forget_hides_archived_messages_from_cold_search(
    r: redis.Redis, deployed: str, reader_settings: Settings
) -> None:
    await _fill(deployed)
    tier_all(r, _archive(reader_settings), older_than_s=None, keep_last=1, max_entries=4)
    async with AsyncReader.from_settings(reader_settings) as reader:
        # Warm this reader's segment cache with the owner's archive first.
        assert len(await reader.search_messages(OWNER, "disk", cold=True)) == 3
        assert main(["forget", OWNER, "--yes", "--redis-url", deployed]) == 0
        assert await reader.search_messages(OWNER, "disk", cold=True) == []
        assert await reader.search_messages(OWNER, "disk", "s1", cold=True) == []
        async with AsyncProducer.from_url(deployed) as producer:
            await producer.append_message(OWNER, "s1", "user", "a new disk, after forget")
            for n in range(CAP):  # a full window again: the search walks the log
                await producer.append_message(OWNER, "s1", "user", f"more lunch {n}")
        await drain(deployed, r, history_cap=CAP)
        after = await reader.search_messages(OWNER, "disk", cold=True)
        assert [h.message["content"] for h in after] == ["a new disk, after forget"]
    async with AsyncReader.from_settings(reader_settings) as fresh:
        after = await fresh.search_messages(OWNER, "disk", "s1", cold=True, limit=100)
        assert [h.message["content"] for h in after] == ["a new disk, after forget"]


async def test_cold_flags_are_checked(deployed: str) -> None:
    async with AsyncReader.from_url(deployed) as reader:
        with pytest.raises(InvalidInputError, match="cold"):
            await reader.search_messages(OWNER, "disk", cold="yes")
        for bad in (0, -1, 1_000_001, True, 2.5):
            with pytest.raises(InvalidInputError, match="cold_limit"):
                await reader.search_messages(OWNER, "disk", cold=True, cold_limit=bad)
