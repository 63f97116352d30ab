"""Liveness: each worker writes a heartbeat with a TTL; ``health`` and ``status`` read them.

A heartbeat is a JSON record under :func:`keys.heartbeat` that expires after
:data:`TTL_S`, plus the consumer's expiry time in the :data:`keys.WORKERS` sorted set,
so readers find the live ones with one range query instead of a keyspace SCAN. A
process that dies stops renewing; within :data:`TTL_S` it no longer counts as alive.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Mapping
from typing import Any

import redis
import redis.asyncio

from memstream.producers import keys
from memstream.producers.errors import InvalidIdError

EVERY_S = 5.0
"""How often a worker renews its heartbeat."""
TTL_S = 15.0
"""A heartbeat not renewed for this long is dead: three missed renewals."""
FORGET_AFTER_S = 3600.0
"""Members of ``ms:workers`` expired this long ago are removed by the next beat."""


def record(consumer: str, *, role: str, versions: list[int], partitions: int,
           started_ms: int, applied: int) -> dict[str, Any]:  # fmt: skip
    """The heartbeat's content: ``consumer`` (its name), ``role`` (worker, tier),
    ``versions`` and ``partitions`` served, ``started_ms``, ``applied`` so far."""
    return {
        "consumer": consumer, "role": role, "host": socket.gethostname(), "pid": os.getpid(),
        "versions": versions, "partitions": partitions, "started_ms": started_ms,
        "applied": applied, "beat_ms": int(time.time() * 1000),
    }  # fmt: skip


async def beat(client: redis.asyncio.Redis, data: Mapping[str, Any], ttl_s: float = TTL_S) -> None:
    """Write ``data`` (from :func:`record`) as the consumer's heartbeat for ``ttl_s``."""
    consumer = str(data["consumer"])
    now = int(time.time() * 1000)
    pipe = client.pipeline(transaction=False)
    pipe.set(keys.heartbeat(consumer), json.dumps(data), px=int(ttl_s * 1000))
    pipe.zadd(keys.WORKERS, {consumer: now + int(ttl_s * 1000)})
    pipe.zremrangebyscore(keys.WORKERS, "-inf", now - int(FORGET_AFTER_S * 1000))
    await pipe.execute()


async def clear(client: redis.asyncio.Redis, consumer: str) -> None:
    """Remove a stopping worker's heartbeat, so it stops counting as alive at once."""
    pipe = client.pipeline(transaction=False)
    pipe.delete(keys.heartbeat(consumer))
    pipe.zrem(keys.WORKERS, consumer)
    await pipe.execute()


def live(client: redis.Redis) -> list[dict[str, Any]]:
    """Every live heartbeat (sorted by consumer name); ``age_ms`` is added to each."""
    now = int(time.time() * 1000)
    raw: Any = client.zrangebyscore(keys.WORKERS, now, "+inf")
    names = sorted(n.decode("utf-8", "replace") for n in raw)
    valid = [n for n in names if _valid(n)]
    found: list[dict[str, Any]] = []
    if not valid:
        return found
    values: Any = client.mget([keys.heartbeat(n) for n in valid])
    for value in values:
        if value is None:
            continue
        try:
            data = json.loads(value)
        except ValueError:
            continue
        if isinstance(data, dict):
            data["age_ms"] = max(0, now - int(data.get("beat_ms", now)))
            found.append(data)
    return found


def _valid(name: str) -> bool:
    try:
        keys.check_id(name, "consumer")
    except InvalidIdError:
        return False
    return True
