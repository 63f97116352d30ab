"""``memstream tail``: print an owner's decoded log, before any worker exists."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, TextIO

import redis

from memstream.producers import keys
from memstream.producers.codec import DecodeError
from memstream.producers.entry import StoredEvent, decode_entry
from memstream.workers.deploy import read_deployment

PAGE = 500


def _id(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def read_log(
    client: redis.Redis, owner: str, *, follow: bool = False, block_ms: int = 1000
) -> Iterator[StoredEvent | tuple[str, DecodeError]]:
    """Yield decoded entries in log order; an undecodable one is yielded with its error."""
    deployment = read_deployment(client)
    p = keys.partition(owner, deployment.partitions)
    log_key = keys.log(p, owner)
    last = "-"
    # Cold tier: the archived segments and the hot log, then follow the hot log.
    from memstream.tiering.hooks import read_all

    for last, fields in read_all(client, p, owner):
        try:
            yield decode_entry(owner, last, fields)
        except DecodeError as e:
            yield last, e
    while follow:
        start = last if last == "-" else f"({last}"
        page: Any = client.xrange(log_key, min=start, max="+", count=PAGE)
        for raw_id, fields in page:
            last = _id(raw_id)
            try:
                yield decode_entry(owner, last, fields)
            except DecodeError as e:
                yield last, e
        if len(page) == PAGE:
            continue
        client.xread({log_key: last if last != "-" else "0-0"}, block=block_ms, count=1)


def render(item: StoredEvent | tuple[str, DecodeError], *, as_json: bool) -> str:
    if isinstance(item, tuple):
        log_id, error = item
        if as_json:
            return json.dumps({"log_id": log_id, "error": str(error)})
        return f"{log_id}  !! undecodable: {error}"
    payload = item.event.payload(json_safe=True)
    if as_json:
        return json.dumps(
            {
                "log_id": item.log_id,
                "type": item.type,
                "v": item.version,
                "session": item.session,
                "eid": item.eid,
                "data": payload,
            },
            ensure_ascii=False,
        )
    session = f" [{item.session}]" if item.session else ""
    return f"{item.log_id}  {item.type}{session}  {json.dumps(payload, ensure_ascii=False)}"


def tail(
    client: redis.Redis, owner: str, out: TextIO, *, follow: bool = False, as_json: bool = False
) -> int:
    count = 0
    for item in read_log(client, owner, follow=follow):
        print(render(item, as_json=as_json), file=out, flush=follow)
        count += 1
    return count
