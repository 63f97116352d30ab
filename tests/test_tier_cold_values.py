"""Cold projection entries: episodes older than the policy's age go to the archive with a
pointer (object, offset, length, sha256) left in Redis; readers resolve it transparently."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis

from memstream.producers import EpisodeSaved, Producer, Settings, keys
from memstream.projections.items import item_key
from memstream.projections.reader import Reader
from memstream.tiering import CorruptSegmentError, cold
from tests.tier_util import PARTITIONS, drain, local_archive, tier_all

OWNER = "epi"


def hits(reader: Reader) -> list[tuple[str, dict[str, object]]]:
    """Search hits without their scores (a recency boost moves with the clock)."""
    return [(h["id"], h["item"]) for h in reader.search(OWNER, "deploy")["hits"]]


def save(url: str, n: int, task: str = "deploy the service") -> None:
    with Producer.from_url(url) as producer:
        for i in range(n):
            event = EpisodeSaved(episode_id=f"e{i}", task=f"{task} {i}", outcome="done",
                                 success=i % 2 == 0, tags=["ops"], importance=0.1 * i)  # fmt: skip
            producer.append(OWNER, event, session="s1")


async def test_old_episodes_move_to_the_archive_and_read_back(
    r: redis.Redis, deployed: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"file://{tmp_path}/archive"
    monkeypatch.setenv("MEMSTREAM_ARCHIVE_URL", url)
    save(deployed, 6)
    await drain(deployed, r)
    settings = Settings.from_url(deployed, archive_url=url)
    with Reader(settings) as reader:
        before = (
            reader.episode(OWNER, "e3"),
            reader.episodes(OWNER, limit=10),
            reader.episodes(OWNER, order="importance"),
            hits(reader),
        )
    pk = keys.Projection(keys.partition(OWNER, PARTITIONS), 1)
    hot_doc = r.hget(item_key(pk, OWNER, "episode", "e3"), "doc")

    summary = tier_all(r, local_archive(tmp_path))
    assert summary.cold_values == 6 and summary.errors == []
    cold_doc: Any = r.hget(item_key(pk, OWNER, "episode", "e3"), "doc")
    assert b"$cold" in cold_doc and cold_doc[:24] == hot_doc[:24]  # same LWW version
    objects = list(local_archive(tmp_path).list(f"p{pk.p}/{OWNER}/cold/"))
    assert len(objects) == 1
    assert tier_all(r, local_archive(tmp_path)).cold_values == 0  # already cold

    with Reader(settings) as reader:
        after = (
            reader.episode(OWNER, "e3"),
            reader.episodes(OWNER, limit=10),
            reader.episodes(OWNER, order="importance"),
            hits(reader),
        )
        assert after == before
        context = reader.context(OWNER, "deploy")
        assert "deploy the service" in context["text"]

    # A newer save wins over the pointer, as over any older value.
    save(deployed, 1, task="roll back")
    await drain(deployed, r)
    with Reader(settings) as reader:
        assert reader.episode(OWNER, "e0")["task"] == "roll back 0"

    # A damaged object is reported by name, never read as something else.
    name = objects[0].name
    archive = local_archive(tmp_path)
    data = bytearray(archive.get(name))
    data[-3] ^= 0x55
    archive.put(name, bytes(data))
    cold._VALUES.clear()  # a fresh process: nothing checked is cached yet
    with Reader(settings) as reader, pytest.raises(CorruptSegmentError, match=name):
        reader.episodes(OWNER, limit=10)


async def test_a_users_own_cold_key_is_not_a_pointer(r: redis.Redis, deployed: str) -> None:
    doc = {"$cold": ["p1/x/cold/v1/episode/1-0_2-0.bin", 0, 3, "0" * 64], "n": 1}
    with Producer.from_url(deployed) as producer:
        producer.save_state(OWNER, {"$cold": ["not", "a", "pointer"]})
        producer.save_state("other", {"nested": doc})
    await drain(deployed, r)
    with Reader(Settings.from_url(deployed)) as reader:
        assert reader.state(OWNER) == {"$cold": ["not", "a", "pointer"]}
        assert reader.state("other") == {"nested": doc}
