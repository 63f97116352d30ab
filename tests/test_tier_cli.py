"""``memstream tier`` from the command line, and the tiers in ``status`` and ``stats``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from memstream.producers import keys
from memstream.workers.cli import main
from tests.tier_util import PARTITIONS, drain, fill, hot


async def test_tier_once_then_status_and_stats(
    r: redis.Redis, deployed: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    url = f"file://{tmp_path}/archive"
    monkeypatch.setenv("MEMSTREAM_ARCHIVE_URL", url)
    fill(deployed, ["ann", "bea"], 80)
    await drain(deployed, r)
    assert main(["tier", "--once", "--older-than", "1h", "--redis-url", deployed]) == 0
    assert "0 segments" in capsys.readouterr().out  # nothing is an hour old
    assert main(["tier", "--once", "--keep-last", "30", "--redis-url", deployed]) == 0
    out = capsys.readouterr().out
    assert "tiered 2 owners: 2 segments, 100 entries" in out and "compressed" in out
    assert len(hot(r, "ann")) == 30

    assert main(["status", "--json", "--redis-url", deployed]) == 6  # 6: no live worker
    tiers = json.loads(capsys.readouterr().out)["tiers"]
    assert tiers["cold_entries"] == 100 and tiers["cold_segments"] == 2
    firsts = [hot(r, o)[0][0] for o in ("ann", "bea")]
    assert tiers["hot_entries"] == 60
    assert tiers["oldest_hot"] == min(firsts, key=lambda i: tuple(map(int, i.split("-"))))
    assert tiers["tier"]["failing"] == "0"
    assert main(["status", "--redis-url", deployed]) == 6
    text = capsys.readouterr().out
    assert "cold tier: 2 segments, 100 entries" in text and "hot logs: 60 entries" in text

    assert main(["stats", "ann", "--json", "--redis-url", deployed]) == 0
    figures = json.loads(capsys.readouterr().out)["tiers"]
    assert figures["cold_entries"] == 50 and figures["hot_entries"] == 30
    assert figures["segments"] == 1 and figures["oldest_hot"] == hot(r, "ann")[0][0]
    assert main(["stats", "ann", "--redis-url", deployed]) == 0
    assert "cold: 1 segments, 50 entries" in capsys.readouterr().out

    assert main(["tail", "ann", "--json", "--redis-url", deployed]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 80 and json.loads(lines[0])["data"]["content"] == "ann says hello number 0"
    p = keys.partition("ann", PARTITIONS)
    assert r.zcard(keys.manifest(p, "ann")) == 1


def test_bad_options(deployed: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"file://{tmp_path}/a"
    argv = ["tier", "--once", "--archive-url", url, "--redis-url", deployed]
    assert main([*argv, "--older-than", "soon"]) == 1
    assert "--older-than" in capsys.readouterr().err
    assert main([*argv, "--keep-last", "-1"]) == 1
    assert "--keep-last" in capsys.readouterr().err


def test_demo_archives_and_reads_across_the_boundary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MEMSTREAM_REDIS_URL", raising=False)
    monkeypatch.setenv("COLUMNS", "100")
    assert main(["demo", "--data-dir", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "tiered 3 owners: 3 segments, 24 entries" in out
    lines = [line for line in out.splitlines() if line.startswith("  [")]
    assert [line[:8] for line in lines] == ["  [cold]"] * 4 + ["  [hot ]"] * 4
    assert any((tmp_path / "demo" / "archive").rglob("*.seg"))
