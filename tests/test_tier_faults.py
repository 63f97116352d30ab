"""Faults: S3 unavailable, slow, failing mid-upload or returning the wrong bytes. No trim
happens for a segment that is not verified; the tier retries with backoff, keeps running,
and ``status`` shows the error."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from rich.console import Console

from memstream.producers import Settings, keys
from memstream.tiering import Policy, Tierer
from memstream.tiering.archive import Archive
from memstream.tiering.loop import run_forever
from memstream.tiering.s3 import S3Archive
from memstream.workers.cli import main
from memstream.workers.status import gather, render
from tests.s3_server import FaultProxy, S3Server, s3_env, s3_server  # noqa: F401
from tests.tier_util import PARTITIONS, drain, fill, hot, through

OWNERS = ["fa", "fb"]


@pytest.fixture
def proxy(s3_env: S3Server) -> Iterator[FaultProxy]:  # noqa: F811
    p = FaultProxy(s3_env.port)
    yield p
    p.close()


@pytest.fixture
def bucket(s3_env: S3Server) -> str:  # noqa: F811
    return s3_env.new_bucket()


def s3(proxy: FaultProxy, bucket: str) -> S3Archive:
    return S3Archive(bucket, "t", proxy.url, connect_timeout=0.5, read_timeout=0.5)


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, s: float) -> None:
        self.calls.append(s)


def tierer(r: redis.Redis, archive: Archive, sleeps: Sleeps) -> Tierer:
    return Tierer(r, archive, Settings(), Policy(older_than_s=0.0, max_entries=50), sleep=sleeps)


def untouched(r: redis.Redis, before: dict[str, list[object]]) -> None:
    for owner, entries in before.items():
        assert hot(r, owner) == entries
        assert r.zcard(keys.manifest(keys.partition(owner, PARTITIONS), owner)) == 0


async def filled(url: str, r: redis.Redis) -> dict[str, list[object]]:
    fill(url, OWNERS, 120)
    await drain(url, r)
    return {o: hot(r, o) for o in OWNERS}


async def test_s3_unavailable_no_trim_backoff_status(
    r: redis.Redis, deployed: str, proxy: FaultProxy, bucket: str
) -> None:
    before = await filled(deployed, r)
    proxy.set("drop")
    sleeps = Sleeps()
    summary = tierer(r, s3(proxy, bucket), sleeps).run_pass()
    assert summary.errors and summary.segments == 0
    untouched(r, before)
    # Each failed segment was retried with growing pauses before giving up.
    assert len(sleeps.calls) >= 4 and sleeps.calls[3] > sleeps.calls[0]
    status = gather(r)
    assert status["tiers"]["tier"]["failing"] == "1"
    assert "S3" in status["tiers"]["tier"]["last_error"]
    out = io.StringIO()
    render(status, Console(file=out, width=200))
    assert "tier error" in out.getvalue()
    json.dumps(status)  # --json stays serialisable

    proxy.set("pass")
    summary = tierer(r, s3(proxy, bucket), Sleeps()).run_pass()
    assert summary.errors == [] and summary.entries == 240
    assert gather(r)["tiers"]["tier"]["failing"] == "0"
    for owner, entries in before.items():
        assert through(r, s3(proxy, bucket), owner) == entries


async def test_upload_cut_midway_is_retried_and_verified(
    r: redis.Redis, deployed: str, proxy: FaultProxy, bucket: str
) -> None:
    before = await filled(deployed, r)
    proxy.set("cut", cut_left=3, cut_bytes=400)
    summary = tierer(r, s3(proxy, bucket), Sleeps()).run_pass()
    assert proxy.cuts >= 1
    assert summary.errors == [] and summary.entries == 240
    for owner, entries in before.items():
        assert hot(r, owner) == []
        assert through(r, s3(proxy, bucket), owner) == entries


async def test_slow_s3_times_out_without_trim(
    r: redis.Redis, deployed: str, proxy: FaultProxy, bucket: str
) -> None:
    fill(deployed, ["fa"], 60)
    await drain(deployed, r)
    before = {"fa": hot(r, "fa")}
    proxy.set("delay", delay_s=1.0)
    slow = S3Archive(bucket, "t", proxy.url, connect_timeout=0.2, read_timeout=0.2)
    worker = Tierer(r, slow, Settings(), Policy(older_than_s=0.0), attempts=1, sleep=Sleeps())
    summary = worker.run_pass()
    assert summary.errors and summary.segments == 0
    assert "timeout" in summary.errors[0].lower()
    untouched(r, before)


class WrongBytes(Archive):
    """Returns corrupted bytes on the next ``bad`` reads: a store that lies."""

    def __init__(self, inner: Archive, bad: int) -> None:
        self.inner, self.bad, self.url = inner, bad, inner.url

    def put(self, name: str, data: bytes) -> None:
        self.inner.put(name, data)

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        data = self.inner.get(name, offset, length)
        if self.bad > 0:
            self.bad -= 1
            return data[:-1] + bytes([data[-1] ^ 1])
        return data

    def head(self, name: str) -> object:  # type: ignore[override]
        return self.inner.head(name)

    def list(self, prefix: str) -> Iterator[object]:  # type: ignore[override]
        return self.inner.list(prefix)

    def delete(self, name: str) -> None:
        self.inner.delete(name)


async def test_wrong_checksum_on_read_back_is_never_trimmed(
    r: redis.Redis, deployed: str, proxy: FaultProxy, bucket: str
) -> None:
    before = await filled(deployed, r)
    lying = WrongBytes(s3(proxy, bucket), bad=10**6)
    summary = tierer(r, lying, Sleeps()).run_pass()
    assert summary.segments == 0 and "sha256" in summary.errors[0]
    untouched(r, before)
    # A store that lies twice, then tells the truth: the retry verifies and trims.
    summary = tierer(r, WrongBytes(s3(proxy, bucket), bad=2), Sleeps()).run_pass()
    assert summary.errors == [] and summary.entries == 240


async def test_tier_loop_keeps_running_through_an_outage(
    r: redis.Redis, deployed: str, proxy: FaultProxy, bucket: str,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.INFO, logger="memstream.tier")
    before = await filled(deployed, r)
    proxy.set("drop")
    stop = threading.Event()
    worker = Tierer(r, s3(proxy, bucket), Settings(), Policy(older_than_s=0.0),
                    sleep=lambda s: time.sleep(min(s, 0.01)))  # fmt: skip
    thread = threading.Thread(target=run_forever, args=(worker, 0.05, stop, io.StringIO()))
    thread.start()
    try:
        time.sleep(1.0)
        assert thread.is_alive()
        untouched(r, before)
        proxy.set("pass")
        deadline = time.monotonic() + 20
        while any(hot(r, o) for o in OWNERS):
            assert time.monotonic() < deadline, "the loop did not recover"
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(10)
    # One warning for the whole outage, however many passes failed, then one recovery.
    tier_logs = [rec for rec in caplog.records if rec.name == "memstream.tier"]
    assert [rec.levelno for rec in tier_logs].count(logging.WARNING) == 1
    assert any("works again" in rec.getMessage() for rec in tier_logs)


async def test_missing_bucket_fails_at_start_naming_the_setting(
    r: redis.Redis, deployed: str, s3_env: S3Server, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
    capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:  # fmt: skip
    monkeypatch.setenv("MEMSTREAM_S3_ENDPOINT_URL", s3_env.url)
    code = main(["tier", "--once", "--redis-url", deployed, "--archive-url", "s3://nope/x"])
    assert code == 1
    assert "MEMSTREAM_ARCHIVE_URL" in capsys.readouterr().err
    monkeypatch.delenv("MEMSTREAM_ARCHIVE_URL", raising=False)
    assert main(["tier", "--once", "--redis-url", deployed]) == 1
    assert "archive_url is not set" in capsys.readouterr().err
