"""The cold tier's entry points for the rest of memstream: replay's log reads, forget,
and the figures status and stats show. Each caller makes one call here."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import redis

from memstream.producers import keys
from memstream.producers.settings import Settings

from . import names
from .archive import cached_archive
from .errors import ArchiveConfigError
from .manifest import Segment
from .readthrough import ColdLog
from .segment import Entry


def log_entries(
    client: redis.Redis, settings: Settings, p: int, owner: str, *, start: str, end: str
) -> Iterator[Entry]:
    """An owner's log from ``start`` (``-`` or an exclusive ``(id``) to ``end``
    (inclusive), archived segments first, then the hot log (replay's fold)."""
    since = None if start == "-" else start.lstrip("(")
    yield from ColdLog(client, cached_archive(settings)).forward(p, owner, since, end)


def read_all(client: redis.Redis, p: int, owner: str) -> Iterator[Entry]:
    """An owner's whole log, cold then hot (``memstream tail``); the archive comes from
    the environment's settings (``MEMSTREAM_ARCHIVE_URL``)."""
    yield from ColdLog(client, cached_archive(Settings.from_env())).forward(p, owner)


def forget_archive(client: redis.Redis, settings: Settings, p: int, owner: str) -> int:
    """Delete the owner's manifest (taking its figures off the partition's totals),
    then every object under the owner's prefix: segments, cold values, and uploads a
    crashed tier process never recorded. Returns the objects deleted.

    Call it after the owner's log is gone: from then on no tier commit for the owner can
    succeed (``ms_tier_commit`` finds the log empty), so nothing new is recorded."""
    members: Any = client.execute_command(  # type: ignore[no-untyped-call]
        "FCALL", "ms_tier_drop", 2, keys.manifest(p, owner), keys.cold_stats(p)
    )
    client.delete(keys.tier_lease(p, owner))
    _scrub_status(client, owner)
    archive = cached_archive(settings)
    if archive is None:
        if members:
            raise ArchiveConfigError(
                f"owner {owner} has {len(members)} archived segments but archive_url is not "
                "set: set MEMSTREAM_ARCHIVE_URL so forget can delete them"
            )
        return 0
    deleted = 0
    for info in list(archive.list(names.owner_prefix(p, owner))):
        archive.delete(info.name)
        deleted += 1
    return deleted


def _scrub_status(client: redis.Redis, owner: str) -> None:
    """The tier's last error may name the owner (an object name): forget leaves no trace."""
    found: Any = client.hgetall(keys.TIER_STATUS)
    pattern = re.compile(rf"(?<![A-Za-z0-9._@+=\-]){re.escape(owner)}(?![A-Za-z0-9._@+=\-])")
    for field, value in found.items():
        text = value.decode("utf-8", "replace")
        if pattern.search(text):
            client.hset(keys.TIER_STATUS, field, pattern.sub("<forgotten owner>", text))


def owner_cold(client: redis.Redis, p: int, owner: str) -> dict[str, Any]:
    """One owner's hot and cold figures (``memstream stats``)."""
    log = keys.log(p, owner)
    pipe = client.pipeline(transaction=True)
    pipe.zrange(keys.manifest(p, owner), 0, -1)
    pipe.xlen(log)
    pipe.memory_usage(log)
    pipe.xrange(log, "-", "+", count=1)
    members, hot, hot_bytes, oldest = pipe.execute()
    segs = [Segment.parse(m) for m in members]
    return {
        "hot_entries": int(hot),
        "hot_bytes": int(hot_bytes or 0),
        "oldest_hot": oldest[0][0].decode() if oldest else None,
        "cold_entries": sum(s.count for s in segs),
        "cold_bytes": sum(s.size for s in segs),
        "cold_raw_bytes": sum(s.raw for s in segs),
        "segments": len(segs),
        "oldest_cold": segs[0].first if segs else None,
    }


HOT_SCAN_LIMIT = 10_000
"""Owners whose hot logs ``memstream status`` measures; past this the figures are marked
inexact, so status stays a few round trips on a big deployment."""


def deployment_cold(client: redis.Redis, partitions: int) -> dict[str, Any]:
    """Hot and cold totals of every partition and the tier processes' last pass and
    error (``memstream status``)."""
    pipe = client.pipeline(transaction=False)
    for p in range(partitions):
        pipe.hgetall(keys.cold_stats(p))
        pipe.hkeys(keys.heads(p))
    pipe.hgetall(keys.TIER_STATUS)
    replies = pipe.execute()
    totals = {"segments": 0, "entries": 0, "bytes": 0, "raw": 0}
    logs: list[str] = []
    for p in range(partitions):
        for name in totals:
            totals[name] += int(replies[2 * p].get(name.encode(), 0))
        logs += [keys.log(p, o.decode()) for o in replies[2 * p + 1]]
    status = {k.decode(): v.decode("utf-8", "replace") for k, v in replies[-1].items()}
    hot = _hot(client, logs[:HOT_SCAN_LIMIT])
    return {
        "hot_entries": hot["entries"],
        "hot_bytes": hot["bytes"],
        "hot_exact": len(logs) <= HOT_SCAN_LIMIT,
        "oldest_hot": hot["oldest"],
        "cold_segments": totals["segments"],
        "cold_entries": totals["entries"],
        "cold_bytes": totals["bytes"],
        "cold_raw_bytes": totals["raw"],
        "tier": status,
    }


def _hot(client: redis.Redis, logs: list[str]) -> dict[str, Any]:
    pipe = client.pipeline(transaction=False)
    for log in logs:
        pipe.xlen(log)
        pipe.memory_usage(log)
        pipe.xrange(log, "-", "+", count=1)
    replies = pipe.execute() if logs else []
    oldest = [r[0][0] for r in replies[2::3] if r]
    first = min(oldest, key=lambda i: tuple(int(x) for x in i.split(b"-"))) if oldest else None
    return {
        "entries": sum(int(n) for n in replies[0::3]),
        "bytes": sum(int(b or 0) for b in replies[1::3]),
        "oldest": first.decode() if first else None,
    }


def _when(log_id: str | None) -> str:
    if log_id is None:
        return "none"
    return f"{_at(int(log_id.split('-')[0]))} ({log_id})"


def _at(ms: int | str) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(int(ms) / 1000))


def status_lines(figures: dict[str, Any]) -> list[str]:
    """``memstream status``'s lines about the tiers."""
    f = figures
    ratio = f["cold_raw_bytes"] / f["cold_bytes"] if f["cold_bytes"] else 0.0
    approx = "" if f["hot_exact"] else f" (first {HOT_SCAN_LIMIT:,} owners)"
    lines = [
        f"hot logs: {f['hot_entries']:,} entries, {f['hot_bytes']:,} bytes{approx}; "
        f"oldest hot entry {_when(f['oldest_hot'])}",
        f"cold tier: {f['cold_segments']:,} segments, {f['cold_entries']:,} entries, "
        f"{f['cold_bytes']:,} bytes ({ratio:.1f}x compressed)",
    ]
    tier = f["tier"]
    if tier.get("last_pass_ms"):
        lines.append(f"last tier pass {_at(tier['last_pass_ms'])}: {tier.get('last_pass')}")
    if tier.get("failing") == "1" and tier.get("last_error"):
        lines.append(f"[red]tier error[/] at {_at(tier['last_error_ms'])}: "
                     f"{tier['last_error']}")  # fmt: skip
    return lines


def stats_lines(figures: dict[str, Any]) -> list[str]:
    """``memstream stats OWNER``'s lines about the tiers."""
    f = figures
    return [
        f"hot log: {f['hot_entries']:,} entries, {f['hot_bytes']:,} bytes, "
        f"oldest hot entry {_when(f['oldest_hot'])}",
        f"cold: {f['segments']:,} segments, {f['cold_entries']:,} entries, "
        f"{f['cold_bytes']:,} bytes, oldest {_when(f['oldest_cold'])}",
    ]
