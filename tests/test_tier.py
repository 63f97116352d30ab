"""The tier pass: segments, manifest, verify-and-trim, the ack gate and the policy."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from memstream.producers import keys
from memstream.tiering import Policy, Segment
from memstream.tiering.cache import SegmentCache
from tests.tier_util import PARTITIONS, drain, fill, hot, local_archive, through, tier_all

OWNERS = ["alice", "bob", "carol"]


async def test_pass_archives_acked_entries_and_reads_through(
    r: redis.Redis, deployed: str, tmp_path: Path
) -> None:
    fill(deployed, OWNERS, 300)
    before = {o: hot(r, o) for o in OWNERS}
    await drain(deployed, r)
    archive = local_archive(tmp_path)
    summary = tier_all(r, archive, max_entries=128)
    assert summary.errors == [] and summary.entries == 900
    assert summary.segments == 3 * 3  # 128 + 128 + 44 per owner
    for owner in OWNERS:
        p = keys.partition(owner, PARTITIONS)
        assert r.xlen(keys.log(p, owner)) == 0
        members = [Segment.parse(m) for m in r.zrange(keys.manifest(p, owner), 0, -1)]
        assert [m.count for m in members] == [128, 128, 44]
        assert through(r, archive, owner) == before[owner]
        for m in members:
            assert archive.head(m.name).size == m.size
    stats = r.hgetall(keys.cold_stats(keys.partition("alice", PARTITIONS)))
    assert int(stats[b"entries"]) >= 300
    # A second pass finds nothing left to do.
    assert tier_all(r, archive).segments == 0


async def test_unacked_entries_stay_hot(r: redis.Redis, deployed: str, tmp_path: Path) -> None:
    fill(deployed, ["alice"], 50)
    await drain(deployed, r)
    fill(deployed, ["alice"], 20)  # no worker runs: these are not acknowledged
    summary = tier_all(r, local_archive(tmp_path))
    assert summary.entries == 50
    assert len(hot(r, "alice")) == 20


async def test_keep_last_and_age(r: redis.Redis, deployed: str, tmp_path: Path) -> None:
    fill(deployed, ["alice"], 100)
    await drain(deployed, r)
    archive = local_archive(tmp_path)
    assert tier_all(r, archive, older_than_s=3600).entries == 0  # all younger than an hour
    summary = tier_all(r, archive, older_than_s=None, keep_last=30)
    assert summary.entries == 70 and len(hot(r, "alice")) == 30
    assert tier_all(r, archive, older_than_s=None, keep_last=30).entries == 0


async def test_pending_and_dead_letter_entries_stay_hot(
    r: redis.Redis, deployed: str, tmp_path: Path
) -> None:
    fill(deployed, ["alice"], 40)
    await drain(deployed, r)
    log = hot(r, "alice")
    p = keys.partition("alice", PARTITIONS)
    # A dead letter naming entry 10 keeps it and everything after it hot.
    r.xadd(keys.dlq(p), {"owner": "alice", "log_id": log[10][0], "reason": "test"})
    summary = tier_all(r, local_archive(tmp_path))
    assert summary.entries == 10
    assert hot(r, "alice") == log[10:]


async def test_replay_cutoff_bounds_what_is_archived(
    r: redis.Redis, deployed: str, tmp_path: Path
) -> None:
    fill(deployed, ["alice", "bob"], 30)
    await drain(deployed, r)
    p = keys.partition("alice", PARTITIONS)
    cut = hot(r, "alice")[9][0]
    r.hset(keys.cutoff(p, 2), "alice", cut)  # as ms_replay_begin would, for v2
    r.hset(keys.META, "next_version", 2)
    summary = tier_all(r, local_archive(tmp_path))
    assert len(hot(r, "alice")) == 20  # entries past the cutoff stay
    if keys.partition("bob", PARTITIONS) != p:
        assert len(hot(r, "bob")) == 30  # not in any cutoff: began after the replay
    assert summary.errors == []


async def test_corrupt_segment_is_reported_by_name(
    r: redis.Redis, deployed: str, tmp_path: Path
) -> None:
    from memstream.tiering import ColdLog, CorruptSegmentError

    fill(deployed, ["alice"], 20)
    await drain(deployed, r)
    archive = local_archive(tmp_path)
    tier_all(r, archive)
    p = keys.partition("alice", PARTITIONS)
    seg = Segment.parse(r.zrange(keys.manifest(p, "alice"), 0, 0)[0])
    data = bytearray(archive.get(seg.name))
    data[len(data) // 2] ^= 0xFF
    archive.put(seg.name, bytes(data))
    with pytest.raises(CorruptSegmentError, match=seg.name):
        list(ColdLog(r, archive, SegmentCache()).forward(p, "alice"))


def test_policy_from_settings() -> None:
    from memstream.producers import Settings

    assert Policy.from_settings(Settings()).older_than_s == 7 * 86400
    assert Policy.from_settings(Settings(), keep_last=5) == Policy(older_than_s=None, keep_last=5)
    assert Policy.from_settings(Settings(), older_than="0s").older_than_s == 0
    assert Policy.from_settings(Settings(), older_than="12h").older_than_s == 43200
    with pytest.raises(ValueError, match="--older-than"):
        Policy.from_settings(Settings(), older_than="soon")


async def test_a_lost_race_archives_nothing_twice(
    r: redis.Redis, deployed: str, tmp_path: Path
) -> None:
    """Process A uploads; its lease expires; process B archives the same entries and more;
    A's commit is refused and A keeps the object B's manifest names."""
    from memstream.producers import Settings
    from memstream.tiering import Tierer
    from memstream.tiering.local import LocalArchive

    fill(deployed, ["alice"], 200)
    await drain(deployed, r)
    before = hot(r, "alice")
    p = keys.partition("alice", PARTITIONS)
    root = tmp_path / "archive"

    class Racing(LocalArchive):
        raced = False

        def put(self, name: str, data: bytes) -> None:
            super().put(name, data)
            if not self.raced:
                self.raced = True
                r.delete(keys.tier_lease(p, "alice"))  # as if A stalled past its lease
                b = Tierer(r, LocalArchive(root), Settings(), Policy(older_than_s=0.0,
                                                                     max_entries=64))  # fmt: skip
                assert b.run_pass().entries == 200

    a = Tierer(r, Racing(root), Settings(), Policy(older_than_s=0.0, max_entries=64))
    summary = a.run_pass()
    assert summary.lost_races == 1 and summary.entries == 0
    members = [Segment.parse(m) for m in r.zrange(keys.manifest(p, "alice"), 0, -1)]
    assert sum(m.count for m in members) == 200
    assert sorted(o.name for o in LocalArchive(root).list("")) == sorted(m.name for m in members)
    assert through(r, LocalArchive(root), "alice") == before


async def test_uploads_a_crash_left_behind_are_collected(
    r: redis.Redis, deployed: str, tmp_path: Path
) -> None:
    from memstream.tiering import names

    fill(deployed, ["alice"], 100)
    await drain(deployed, r)
    log = hot(r, "alice")
    p = keys.partition("alice", PARTITIONS)
    archive = local_archive(tmp_path)
    covered = names.segment(p, "alice", log[0][0], log[10][0])  # a crashed upload
    beyond = names.segment(p, "alice", log[60][0], log[99][0])  # maybe in flight
    archive.put(covered, b"x")
    archive.put(beyond, b"y")
    tier_all(r, archive, older_than_s=None, keep_last=50)
    left = {o.name for o in archive.list(names.owner_prefix(p, "alice"))}
    assert covered not in left and beyond in left
    assert len(left) == 2  # the recorded segment and the one beyond the newest
