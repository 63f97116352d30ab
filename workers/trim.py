"""Feed trimming: a feed is a work queue, trimmed below what any group still needs.

For each group the oldest needed entry is its oldest pending one, or else the one after
its last delivered. MINID drops strictly older entries, so nothing a group has not
finished is ever removed.

The same housekeeping reaps consumers: every worker process joins the groups under its
own name, so the consumers of dead processes would pile up forever. One that has been
idle longer than ``consumer_idle_ms`` and holds no pending entry is removed, atomically
(``ms_reap_consumers``), so none that just took an entry can lose it.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio

from memstream.producers import keys
from memstream.projections.ops import id_tuple


async def needed_from(client: redis.asyncio.Redis, feed: str) -> tuple[int, int] | None:
    """The oldest id any group still needs, or None when the feed has no groups."""
    groups: Any = await client.xinfo_groups(feed)
    if not groups:
        return None
    oldest: tuple[int, int] | None = None
    for group in groups:
        # XINFO and XPENDING are two calls: the PEL may have emptied in between.
        summary: Any = await client.xpending(feed, group["name"]) if group["pending"] else None
        if summary and summary["min"] is not None:
            need = id_tuple(summary["min"])
        else:
            ms, seq = id_tuple(group["last-delivered-id"])
            need = (ms, seq + 1)
        oldest = need if oldest is None else min(oldest, need)
    return oldest


CONSUMER_IDLE_MS = 3_600_000
"""A consumer idle for an hour with nothing pending belongs to a dead process: a live
one reads (XREADGROUP BLOCK) at least every few seconds, and if an idle-but-alive one is
removed anyway, its next read simply creates it again."""


async def reap_consumers(
    client: redis.asyncio.Redis, p: int, idle_ms: int = CONSUMER_IDLE_MS
) -> int:
    """Remove the idle consumers without pending entries of every group on partition
    ``p``'s feed; return how many went."""
    removed: Any = await client.fcall("ms_reap_consumers", 1, keys.feed(p), str(idle_ms))
    return int(removed)


async def trim_feed(
    client: redis.asyncio.Redis, p: int, *, consumer_idle_ms: int = CONSUMER_IDLE_MS
) -> int:
    """Trim one partition's feed and reap its dead consumers (idle longer than
    ``consumer_idle_ms`` with nothing pending); return how many feed entries went."""
    feed = keys.feed(p)
    await reap_consumers(client, p, consumer_idle_ms)
    need = await needed_from(client, feed)
    if need is None or need == (0, 1):
        return 0
    removed: Any = await client.xtrim(feed, minid=f"{need[0]}-{need[1]}", approximate=False)
    return int(removed)
