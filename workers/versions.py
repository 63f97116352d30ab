"""The blue/green version steps of a full replay (ARCHITECTURE, "Replay is blue/green").

Begin N+1, wait for its group to catch up, flip, retire N; and the clean-up of what a
replay that died left behind. Every step but the fold is idempotent, so an outage simply
runs it again (see :func:`memstream.workers.replay.replay_all`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import redis
from redis.exceptions import ResponseError

from memstream.producers import keys
from memstream.producers.deployment import Deployment
from memstream.projections.ops import id_tuple

from .fold import ReplayError, read_deployment, run


def _groups(client: redis.Redis, feed: str) -> list[dict[str, Any]]:
    try:
        return list(client.xinfo_groups(feed))
    except ResponseError:  # no feed yet: no group either
        return []


def delete_version(client: redis.Redis, version: int) -> int:
    """UNLINK every key of ``version`` in every partition (one SCAN pass); return the count.

    SCAN returns every key that exists for the whole scan, so a key written before the
    scan starts (a last write before the version's group was destroyed) is found too.
    """
    batch: list[bytes] = []
    removed = 0
    for raw in client.scan_iter(match=keys.version_pattern(version), count=1000):
        found = keys.version_of_key(raw.decode("utf-8", "replace"))
        if found is not None and found[1] == version:
            batch.append(raw)
        if len(batch) >= 500:
            removed += int(client.unlink(*batch))
            batch.clear()
    if batch:
        removed += int(client.unlink(*batch))
    return removed


def drop_version(client: redis.Redis, partitions: int, version: int) -> None:
    """Stop serving ``version`` (its groups go first, so no worker writes to it again),
    then delete its keys."""
    for p in range(partitions):
        with contextlib.suppress(ResponseError):
            client.xgroup_destroy(keys.feed(p), keys.group(version))
    delete_version(client, version)


def purge_stale(client: redis.Redis, d: Deployment) -> None:
    """Remove what a replay that died left behind: a half-built or half-deleted version."""
    raw: Any = client.hgetall(keys.META)
    stale: set[int] = set()
    if d.next_version is not None:
        stale.add(d.next_version)
    if raw.get(b"retiring"):
        stale.add(int(raw[b"retiring"]))
    for p in range(d.partitions):
        for g in _groups(client, keys.feed(p)):
            version = keys.group_version(g["name"])
            if version is not None:
                stale.add(version)
    stale.discard(d.version)
    # Workers stop starting loops for it; their running loops end on NOGROUP.
    client.hdel(keys.META, "next_version")
    for version in sorted(stale):
        drop_version(client, d.partitions, version)
    client.hdel(keys.META, "retiring")


def begin(client: redis.Redis, partitions: int, version: int) -> None:
    group = keys.group(version)
    for p in range(partitions):
        call = ("FCALL", "ms_replay_begin", 3, keys.feed(p), keys.heads(p),
                 keys.cutoff(p, version), group)  # fmt: skip
        run(client, call)
    # Only now may workers serve the new group: every partition has its cutoff.
    client.hset(keys.META, "next_version", version)


def caught_up(client: redis.Redis, p: int, group: str, target: tuple[int, int]) -> bool:
    feed = keys.feed(p)
    found = [g for g in _groups(client, feed) if g["name"] == group.encode()]
    if not found:
        raise ReplayError(f"group {group} vanished from {feed}: was the replay cleaned up?")
    if id_tuple(found[0]["last-delivered-id"]) < target:
        return False
    pending: Any = client.xpending_range(feed, group, min="-", max=f"{target[0]}-{target[1]}",
                                         count=1)  # fmt: skip
    return not pending


def wait_caught_up(
    client: redis.Redis,
    partitions: int,
    version: int,
    timeout_s: float,
    renew: Callable[[], None],
) -> None:
    """Wait until the group has applied every feed entry that existed when we started
    waiting. Appends keep coming, so "caught up" is measured against that snapshot."""
    group = keys.group(version)
    targets: dict[int, tuple[int, int]] = {}
    for p in range(partitions):
        info: Any = client.xinfo_stream(keys.feed(p))
        targets[p] = id_tuple(info["last-generated-id"])
    deadline = time.monotonic() + timeout_s
    while True:
        targets = {p: t for p, t in targets.items() if not caught_up(client, p, group, t)}
        if not targets:
            return
        if time.monotonic() > deadline:
            raise ReplayError(
                f"v{version} did not catch up within {timeout_s:.0f}s on partitions "
                f"{sorted(targets)[:10]}: are `memstream worker` processes running? "
                f"v{version - 1} is still the active version; v{version} was removed"
            )
        renew()
        time.sleep(0.05)


def abandon(client: redis.Redis, partitions: int, version: int) -> None:
    """Best effort: drop the half-built ``version`` unless it is the active one (a flip
    whose reply was lost). What stays behind, the next replay's ``purge_stale`` drops."""
    with contextlib.suppress(Exception):
        if read_deployment(client).version != version:
            client.hdel(keys.META, "next_version")
            drop_version(client, partitions, version)


def flip(client: redis.Redis, old: int, new: int) -> None:
    """Make N+1 active in one MULTI; running it again changes nothing."""
    flip = client.pipeline(transaction=True)
    flip.hset(keys.META, mapping={"version": new, "retiring": old})
    flip.hdel(keys.META, "next_version")
    flip.execute()


def retire(client: redis.Redis, partitions: int, old: int, new: int, grace_s: float) -> None:
    """Delete N once readers no longer trust a cached N; idempotent, so an outage simply
    runs it again (the grace then starts over, which only delays the deletion)."""
    time.sleep(grace_s)
    drop_version(client, partitions, old)
    pipe = client.pipeline(transaction=False)
    for p in range(partitions):
        pipe.unlink(keys.cutoff(p, new))
    pipe.hdel(keys.META, "retiring")
    pipe.execute()
