"""Helpers shared by the cold-tier tests: fill logs, let workers ack, read what is stored."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

from memstream.producers import Append, Producer, Settings, keys
from memstream.producers.events_messages import MessageAppended
from memstream.tiering import ColdLog, Tierer, open_archive
from memstream.tiering.archive import Archive
from memstream.tiering.policy import Policy
from tests.workers_util import running_worker

PARTITIONS = 16


def fill(url: str, owners: Sequence[str], per_owner: int, sessions: int = 2) -> None:
    """Append ``per_owner`` chat messages to each owner, in a few sessions."""
    with Producer.from_url(url) as producer:
        items = []
        for i in range(per_owner):
            for owner in owners:
                event = MessageAppended(role="user", content=f"{owner} says hello number {i}")
                items.append(Append(owner, event, session=f"s{i % sessions}"))
        for start in range(0, len(items), 500):
            producer.append_many(items[start : start + 500])


def drained(r: redis.Redis) -> bool:
    for p in range(PARTITIONS):
        feed = keys.feed(p)
        last = r.xinfo_stream(feed)["last-generated-id"]
        for g in r.xinfo_groups(feed):
            if int(g["pending"]) or g["last-delivered-id"] != last:
                return False
    return True


async def drain(url: str, r: redis.Redis, timeout: float = 60, **settings: Any) -> None:
    """Run a worker until every group has applied everything."""
    async with running_worker(url, settings=settings or None):
        deadline = time.monotonic() + timeout
        while not drained(r):
            assert time.monotonic() < deadline, "workers did not drain"
            await asyncio.sleep(0.05)


def local_archive(tmp: Path) -> Archive:
    return open_archive(Settings(), f"file://{tmp}/archive")


def tier_all(r: redis.Redis, archive: Archive, **policy: Any) -> Any:
    options = {"older_than_s": 0.0, **policy}
    return Tierer(r, archive, Settings(), Policy(**options)).run_pass()


def hot(r: redis.Redis, owner: str) -> list[tuple[str, dict[bytes, bytes]]]:
    p = keys.partition(owner, PARTITIONS)
    return [(i.decode(), f) for i, f in r.xrange(keys.log(p, owner))]


def through(r: redis.Redis, archive: Archive | None, owner: str) -> list[Any]:
    p = keys.partition(owner, PARTITIONS)
    return list(ColdLog(r, archive).forward(p, owner))
