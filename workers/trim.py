"""Feed trimming: a feed is a work queue, trimmed below what any group still needs.

For each group the oldest needed entry is its oldest pending one, or else the one after
its last delivered. MINID drops strictly older entries, so nothing a group has not
finished is ever removed.
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


async def trim_feed(client: redis.asyncio.Redis, p: int) -> int:
    """Trim one partition's feed; return how many entries went."""
    feed = keys.feed(p)
    need = await needed_from(client, feed)
    if need is None or need == (0, 1):
        return 0
    removed: Any = await client.xtrim(feed, minid=f"{need[0]}-{need[1]}", approximate=False)
    return int(removed)
