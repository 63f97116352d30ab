"""The cold tier's entry points for the rest of memstream: replay's log reads, forget,
and the figures status and stats show. Each caller makes one call here."""

from __future__ import annotations

import re
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


def deployment_cold(client: redis.Redis, partitions: int) -> dict[str, Any]:
    """The cold totals of every partition and the tier processes' last pass and error
    (``memstream status``)."""
    pipe = client.pipeline(transaction=False)
    for p in range(partitions):
        pipe.hgetall(keys.cold_stats(p))
    pipe.hgetall(keys.TIER_STATUS)
    replies = pipe.execute()
    totals = {"segments": 0, "entries": 0, "bytes": 0, "raw": 0}
    for reply in replies[:-1]:
        for name in totals:
            totals[name] += int(reply.get(name.encode(), 0))
    status = {k.decode(): v.decode("utf-8", "replace") for k, v in replies[-1].items()}
    return {
        "cold_segments": totals["segments"],
        "cold_entries": totals["entries"],
        "cold_bytes": totals["bytes"],
        "cold_raw_bytes": totals["raw"],
        "tier": status,
    }
