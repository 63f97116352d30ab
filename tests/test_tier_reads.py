"""Read-through: ``Reader.log``, ``tail`` and history paging over cold and hot, with no gap
and no duplicate at the boundary, and a bounded segment cache."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import redis

from memstream.producers import Append, Producer, Settings, keys
from memstream.producers.events_messages import HistoryCleared, MessageAppended
from memstream.projections.reader import AsyncReader, Reader
from memstream.projections.results import Message
from memstream.tiering import ColdLog, SegmentCache
from memstream.workers.tail import tail
from tests.tier_util import PARTITIONS, drain, fill, hot, local_archive, through, tier_all


@pytest.fixture
def archive_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"file://{tmp_path}/archive"
    monkeypatch.setenv("MEMSTREAM_ARCHIVE_URL", url)
    return url


async def test_log_reads_cold_then_hot(
    r: redis.Redis, deployed: str, archive_url: str, tmp_path: Path
) -> None:
    fill(deployed, ["alice", "bob"], 300)
    await drain(deployed, r)
    everything = hot(r, "alice")
    tier_all(r, local_archive(tmp_path), older_than_s=None, keep_last=70, max_entries=64)
    assert len(hot(r, "alice")) == 70
    settings = Settings.from_url(deployed, archive_url=archive_url)
    ids = [i for i, _ in everything]
    async with AsyncReader.from_settings(settings) as reader:
        whole = await reader.log("alice", limit=10_000)
        assert [e["log_id"] for e in whole] == ids
        assert whole[5]["data"]["content"] == "alice says hello number 5"
        assert whole[5]["type"] == "message.appended" and whole[5]["session"] == "s1"
        # Pages of 37 from cursors that fall inside segments and on their edges.
        paged, since = [], None
        while page := await reader.log("alice", since=since, limit=37):
            paged += page
            since = page[-1]["log_id"]
        assert [e["log_id"] for e in paged] == ids
        window = await reader.log("alice", since=ids[60], until=ids[250], limit=10_000)
        assert [e["log_id"] for e in window] == ids[61:251]
    with Reader(settings) as blocking:
        assert [e["log_id"] for e in blocking.log("alice", limit=500)] == ids
        with pytest.raises(ValueError, match="limit"):
            blocking.log("alice", limit=0)
        with pytest.raises(ValueError, match="since"):
            blocking.log("alice", since="yesterday")
    out = io.StringIO()
    assert tail(r, "alice", out) == 300
    assert "alice says hello number 0" in out.getvalue().splitlines()[0]


async def test_no_gap_or_duplicate_when_tiering_runs_mid_read(
    r: redis.Redis, deployed: str, tmp_path: Path
) -> None:
    fill(deployed, ["alice"], 400)
    await drain(deployed, r)
    everything = hot(r, "alice")
    archive = local_archive(tmp_path)
    p = keys.partition("alice", PARTITIONS)
    for split in (0, 30, 150, 399):
        tier_all(r, archive, older_than_s=None, keep_last=400 - split, max_entries=50)
    forward = ColdLog(r, archive, SegmentCache()).forward(p, "alice", page=40)
    seen = [next(forward) for _ in range(170)]  # inside the hot part now
    tier_all(r, archive, max_entries=50)  # everything goes cold under the reader
    seen += list(forward)
    assert seen == everything
    backward = ColdLog(r, archive, SegmentCache()).backward(p, "alice", page=40)
    assert list(backward) == everything[::-1]


async def test_history_pages_past_the_cap_into_log_and_archive(
    r: redis.Redis, deployed: str, archive_url: str, tmp_path: Path
) -> None:
    total = 10_250
    with Producer.from_url(deployed) as producer:
        items = [Append("ada", MessageAppended(role="user", content=f"message {i}"),
                        session="long") for i in range(total)]  # fmt: skip
        items.insert(40, Append("ada", HistoryCleared(), session="other"))  # not this session
        for start in range(0, len(items), 1000):
            producer.append_many(items[start : start + 1000])
    await drain(deployed, r, timeout=120)
    settings = Settings.from_url(deployed, archive_url=archive_url)
    tier_all(r, local_archive(tmp_path), older_than_s=None, keep_last=4000)
    assert (
        r.zcard(keys.Projection(keys.partition("ada", PARTITIONS), 1).key("hist", "ada", "long"))
        == 100
    )
    with Reader(settings) as reader:
        newest = reader.history("ada", "long", last=100)
        assert [m["content"] for m in newest] == [f"message {i}" for i in range(total - 100, total)]
        big = reader.history("ada", "long", last=10_000)
        assert [m["content"] for m in big] == [f"message {i}" for i in range(total - 10_000,
                                                                          total)]  # fmt: skip
        assert big[-100:] == newest  # the same shape from the log as from Redis
        pages: list[Message] = []
        before = None
        while page := reader.history("ada", "long", last=1000, before=before):
            pages = page + pages
            before = page[0]["log_id"]
        assert [m["content"] for m in pages] == [f"message {i}" for i in range(total)]
        assert len({m["log_id"] for m in pages}) == total


async def test_history_paging_stops_at_a_clear(
    r: redis.Redis, deployed: str, archive_url: str
) -> None:
    with Producer.from_url(deployed) as producer:
        for i in range(150):
            producer.append_message("bo", "s", "user", f"old {i}")
        producer.clear_history("bo", "s")
        for i in range(250):
            producer.append_message("bo", "s", "user", f"new {i}")
    await drain(deployed, r)
    with Reader(Settings.from_url(deployed, archive_url=archive_url)) as reader:
        found = reader.history("bo", "s", last=1000)
        assert [m["content"] for m in found] == [f"new {i}" for i in range(250)]


def test_segment_cache_is_bounded() -> None:
    cache = SegmentCache(max_bytes=1000)
    for i in range(10):
        cache.put(f"seg{i}", "x", [(f"{i}-0", [])], 300)
    assert cache.bytes <= 1000 and len(cache) == 3
    assert cache.get("seg9", "x") is not None and cache.get("seg0", "x") is None
    cache.put("huge", "x", [], 5000)
    assert cache.get("huge", "x") is None


async def test_reading_cold_without_archive_url_names_the_setting(
    r: redis.Redis, deployed: str, tmp_path: Path
) -> None:
    from memstream.tiering import ArchiveConfigError

    fill(deployed, ["alice"], 10)
    await drain(deployed, r)
    tier_all(r, local_archive(tmp_path))
    with pytest.raises(ArchiveConfigError, match="MEMSTREAM_ARCHIVE_URL"):
        through(r, None, "alice")
