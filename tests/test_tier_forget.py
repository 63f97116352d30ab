"""Forget covers the archive: zero objects and zero keys naming the owner are left, and a
bystander with a similar id keeps every object (local folder and S3)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import redis

from memstream.producers import Settings, keys
from memstream.tiering import open_archive
from memstream.tiering.archive import Archive
from memstream.workers.cli import main
from tests.s3_server import S3Server, s3_env, s3_server  # noqa: F401
from tests.test_forget import NEIGHBOUR, OWNER, mentions, populate
from tests.tier_util import PARTITIONS, drain, fill, through, tier_all

NAMES_OWNER = re.compile(r"(?<![A-Za-z0-9._@+=\-])" + re.escape(OWNER) + r"(?![A-Za-z0-9._@+=\-])")


@pytest.fixture(params=["local", "s3"])
def archive_env(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Archive:
    if request.param == "local":
        url = f"file://{tmp_path}/archive"
        settings = Settings()
    else:
        server: S3Server = request.getfixturevalue("s3_env")
        url = f"s3://{server.new_bucket()}/tier"
        settings = Settings(s3_endpoint_url=server.url)
        monkeypatch.setenv("MEMSTREAM_S3_ENDPOINT_URL", server.url)
    monkeypatch.setenv("MEMSTREAM_ARCHIVE_URL", url)
    return open_archive(settings, url)


async def test_forget_deletes_the_owners_archive(
    deployed: str, r: redis.Redis, archive_env: Archive, tmp_path: Path
) -> None:
    populate(deployed, r)
    fill(deployed, [OWNER, NEIGHBOUR], 150)
    await drain(deployed, r)
    summary = tier_all(r, archive_env, max_entries=64)
    assert summary.errors == [] and summary.entries > 300
    bystander = sorted(o.name for o in archive_env.list(""))
    owner_objects = [n for n in bystander if NAMES_OWNER.search(n)]
    bystander = [n for n in bystander if n not in owner_objects]
    assert len(owner_objects) >= 3 and len(bystander) >= 3
    neighbour_log = through(r, archive_env, NEIGHBOUR)

    assert main(["forget", OWNER, "--yes", "--redis-url", deployed]) == 0

    left = sorted(o.name for o in archive_env.list(""))
    assert [n for n in left if NAMES_OWNER.search(n)] == []
    assert left == bystander
    assert through(r, archive_env, NEIGHBOUR) == neighbour_log
    assert through(r, archive_env, OWNER) == []
    assert mentions(r) == []
    if archive_env.url.startswith("file://"):
        on_disk = [str(p) for p in (tmp_path / "archive").rglob("*")]
        assert [p for p in on_disk if NAMES_OWNER.search(p)] == []
    p = keys.partition(NEIGHBOUR, PARTITIONS)
    if keys.partition(OWNER, PARTITIONS) == p:
        stats = r.hgetall(keys.cold_stats(p))
        assert int(stats[b"entries"]) == sum(1 for _ in neighbour_log) - r.xlen(
            keys.log(p, NEIGHBOUR)
        )
