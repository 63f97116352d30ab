"""The demo's cold-tier step: archive all but the newest entries of every owner to a
local folder, then show one owner's log read across the cold/hot boundary."""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Any

import redis
from rich.console import Console

from memstream.producers import keys
from memstream.producers.codec import DecodeError
from memstream.producers.deployment import Deployment
from memstream.producers.entry import decode_entry
from memstream.producers.settings import Settings
from memstream.projections.ops import id_tuple

from .local import LocalArchive
from .manifest import Segment
from .policy import Policy
from .readthrough import ColdLog
from .tier import Tierer

KEEP_HOT = 4
SHOWN = 8


def demo_tier(client: redis.Redis, data_dir: Path, console: Console, owner: str) -> None:
    archive = LocalArchive(data_dir / "archive")
    policy = Policy(older_than_s=None, keep_last=KEEP_HOT)
    summary = Tierer(client, archive, Settings(), policy).run_pass()
    say = console.print
    say(f"cold tier ({archive.url}, keeping the newest {KEEP_HOT} entries of each owner hot):",
        highlight=False)  # fmt: skip
    say(f"  {summary.text()}", highlight=False)
    raw: Any = client.hgetall(keys.META)
    p = keys.partition(owner, Deployment.from_meta(raw).partitions)
    newest: Any = client.zrange(keys.manifest(p, owner), "+", "-", bylex=True, desc=True,
                                offset=0, num=1)  # fmt: skip
    boundary = id_tuple(Segment.parse(newest[0]).last) if newest else None
    rows = list(islice(ColdLog(client, archive).backward(p, owner), SHOWN))[::-1]
    say(f"{owner}'s last {len(rows)} log entries, read through cold and hot:", highlight=False)
    for log_id, fields in rows:
        where = "cold" if boundary is not None and id_tuple(log_id) <= boundary else "hot "
        try:
            event = decode_entry(owner, log_id, fields)
            what = event.type
            content = getattr(event.event, "content", None)
            if content:
                what += f": {content[:50]}"
        except DecodeError as e:
            what = f"undecodable: {e}"
        say(f"  [{where}] {log_id}  {what}", markup=False, highlight=False)
