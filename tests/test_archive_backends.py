"""The archive interface's suite, written once and run against both backends: a local
directory and S3 (moto's server over HTTP)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from memstream.producers.settings import Settings
from memstream.tiering import names
from memstream.tiering.archive import Archive, open_archive
from memstream.tiering.errors import ArchiveConfigError, ObjectMissingError
from tests.s3_server import S3Server, s3_env, s3_server  # noqa: F401


@pytest.fixture(params=["local", "s3"])
def archive(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Archive]:
    if request.param == "local":
        backend = open_archive(Settings(), f"file://{tmp_path}/archive")
    else:
        server: S3Server = request.getfixturevalue("s3_env")
        bucket = server.new_bucket()
        backend = open_archive(Settings(s3_endpoint_url=server.url), f"s3://{bucket}/pre/fix")
    backend.check()
    yield backend
    backend.close()


def test_put_get_head_roundtrip(archive: Archive) -> None:
    name = names.segment(3, "alice", "1-0", "9-5")
    data = bytes(range(256)) * 40
    archive.put(name, data)
    assert archive.get(name) == data
    assert archive.get(name, 10, 20) == data[10:30]
    assert archive.get(name, 10_000) == data[10_000:]
    info = archive.head(name)
    assert info is not None and info.size == len(data) and info.name == name


def test_put_replaces_whole_object(archive: Archive) -> None:
    archive.put("p0/bob/log/x.seg", b"first version, longer")
    archive.put("p0/bob/log/x.seg", b"second")
    assert archive.get("p0/bob/log/x.seg") == b"second"


def test_missing_object(archive: Archive) -> None:
    assert archive.head("p1/nobody/log/none.seg") is None
    with pytest.raises(ObjectMissingError) as e:
        archive.get("p1/nobody/log/none.seg")
    assert "p1/nobody/log/none.seg" in str(e.value)


def test_list_by_prefix_is_exact_and_ordered(archive: Archive) -> None:
    for owner in ("alice", "alice2", "alic"):
        for i in (3, 1, 2):
            archive.put(f"{names.owner_prefix(5, owner)}log/{i}.seg", owner.encode() * i)
    found = list(archive.list(names.owner_prefix(5, "alice")))
    assert [o.name for o in found] == [f"p5/alice/log/{i}.seg" for i in (1, 2, 3)]
    assert [o.size for o in found] == [5, 10, 15]
    assert list(archive.list("p9/")) == []


def test_delete(archive: Archive) -> None:
    archive.put("p2/carol/log/a.seg", b"a")
    archive.put("p2/carol/log/b.seg", b"b")
    archive.delete("p2/carol/log/a.seg")
    archive.delete("p2/carol/log/a.seg")  # deleting twice is fine
    assert [o.name for o in archive.list("p2/carol/")] == ["p2/carol/log/b.seg"]
    archive.delete("p2/carol/log/b.seg")
    assert list(archive.list("p2/")) == []


def test_bad_names_are_refused(archive: Archive) -> None:
    for bad in ("", "/abs", "p0/../escape", "p0//x"):
        with pytest.raises(ValueError):
            archive.put(bad, b"x")


def test_names_are_built_from_valid_ids() -> None:
    assert names.segment(7, "u1", "1700000000000-3", "1700000000001-0") == (
        "p7/u1/log/1700000000000-0000000003_1700000000001-0000000000.seg"
    )
    with pytest.raises(ValueError):
        names.segment(7, "../x", "1-0", "2-0")
    with pytest.raises(ValueError):
        names.segment(7, "u1", "2-0", "1-0")
    with pytest.raises(ValueError):
        names.segment(7, "u1", "abc", "1-0")
    parsed = names.parse_segment(names.segment(7, "u1", "5-1", "6-2"))
    assert parsed == (7, "u1", "0000000000005-0000000001", "0000000000006-0000000002")


def test_missing_bucket_is_a_clear_error(s3_env: S3Server) -> None:  # noqa: F811
    backend = open_archive(Settings(s3_endpoint_url=s3_env.url), "s3://no-such-bucket/x")
    with pytest.raises(ArchiveConfigError, match=r"no-such-bucket.*MEMSTREAM_ARCHIVE_URL"):
        backend.check()


def test_unreachable_endpoint_is_a_clear_error(s3_env: S3Server) -> None:  # noqa: F811
    from tests.redis_server import free_port

    settings = Settings(s3_endpoint_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ArchiveConfigError, match="MEMSTREAM_S3_ENDPOINT_URL"):
        open_archive(settings, "s3://bucket").check()


def test_bad_archive_url() -> None:
    with pytest.raises(ArchiveConfigError, match="archive_url"):
        open_archive(Settings(), "ftp://x/y")
    with pytest.raises(ArchiveConfigError, match="MEMSTREAM_ARCHIVE_URL"):
        open_archive(Settings())
    with pytest.raises(ArchiveConfigError, match="bucket"):
        open_archive(Settings(), "s3:///prefix")


def test_refused_credentials_are_a_clear_error() -> None:
    """moto checks signatures against its IAM users once auth is switched on."""
    from tests.s3_server import aws_env

    server = S3Server(env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    try:
        with aws_env():
            backend = open_archive(Settings(s3_endpoint_url=server.url), "s3://bucket/x")
            with pytest.raises(ArchiveConfigError, match="AWS_ACCESS_KEY_ID"):
                backend.check()
    finally:
        server.stop()
