"""``memstream init``: load the Redis Functions and write the deployment parameters.

Idempotent: running it again reloads the functions and keeps ``ms:meta``. It refuses to
change ``partitions`` once any owner has data, because every key embeds its partition.
"""

from __future__ import annotations

import secrets
from importlib import resources
from typing import Any

import redis
from redis.exceptions import ResponseError

from memstream.producers import keys
from memstream.producers.deployment import (
    DEFAULT_EID_TTL,
    DEFAULT_MAX_EVENT_BYTES,
    FORMAT,
    Deployment,
)
from memstream.producers.errors import ConfigError

LUA_PACKAGES = ("memstream.producers.lua", "memstream.workers.lua")


def lua_sources() -> list[str]:
    """Every function library we ship, in a stable order."""
    sources = []
    for package in LUA_PACKAGES:
        for item in sorted(resources.files(package).iterdir(), key=lambda f: f.name):
            if item.name.endswith(".lua"):
                sources.append(item.read_text(encoding="utf-8"))
    return sources


KEY_PLACEHOLDER = "__MEMSTREAM_SIGNING_KEY__"


def signing_key(client: redis.Redis) -> str:
    """The deployment's signing key (docs/security.md), made on first use."""
    client.set(keys.SIGNING_KEY, secrets.token_hex(32), nx=True)
    raw: Any = client.get(keys.SIGNING_KEY)
    return str(raw.decode())


def load_functions(client: redis.Redis) -> None:
    """Load every library, with the signing key written into the code: a function cannot
    read a key its caller may not read, and producers must not read the signing key."""
    key = signing_key(client)
    for source in lua_sources():
        client.function_load(source.replace(KEY_PLACEHOLDER, key), replace=True)


def _has_data(client: redis.Redis, partitions: int) -> bool:
    pipe = client.pipeline(transaction=False)
    for p in range(partitions):
        pipe.hlen(keys.heads(p))
        pipe.xlen(keys.feed(p))
    return any(int(n) for n in pipe.execute())


def ensure_groups(client: redis.Redis, deployment: Deployment, version: int) -> None:
    """Create group ``v<version>`` on every feed from the start, so no append is missed."""
    for p in range(deployment.partitions):
        try:
            client.xgroup_create(keys.feed(p), keys.group(version), id="0", mkstream=True)
        except ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise


def read_deployment(client: redis.Redis) -> Deployment:
    raw: Any = client.hgetall(keys.META)
    return Deployment.from_meta(raw)


def init(
    client: redis.Redis,
    *,
    partitions: int | None = None,
    max_event_bytes: int | None = None,
    eid_ttl: int | None = None,
    require_signed: bool | None = None,
) -> Deployment:
    """Load functions, write ``ms:meta`` and the per-partition copies; return the result.

    ``require_signed``: workers dead-letter, and replay skips, log entries without a valid
    signature (written around ``ms_append``, including the MULTI fallback); off, they are
    applied and counted as ``unsigned`` (docs/security.md). None keeps the current mode."""
    if partitions is not None and not 1 <= partitions <= 16384:
        raise ConfigError("partitions must be between 1 and 16384")
    if max_event_bytes is not None and not 64 <= max_event_bytes <= 64 * 1024 * 1024:
        raise ConfigError("max_event_bytes must be between 64 and 67108864")
    raw: Any = client.hgetall(keys.META)
    current = Deployment.from_meta(raw) if raw else None
    if current is not None and partitions is not None and partitions != current.partitions:
        if _has_data(client, current.partitions):
            raise ConfigError(
                f"refusing to change partitions from {current.partitions} to {partitions}: "
                "the deployment already has data, and every key embeds its partition"
            )
        _drop_partition_keys(client, current.partitions)
        current = None
    wanted = Deployment(
        partitions=partitions or (current.partitions if current else keys.DEFAULT_PARTITIONS),
        version=current.version if current else 1,
        max_event_bytes=max_event_bytes
        or (current.max_event_bytes if current else DEFAULT_MAX_EVENT_BYTES),
        format=FORMAT,
        next_version=current.next_version if current else None,
    )
    # Before the new functions: a pointer written by the old ms_append must be exempt
    # from the own-pointer rule by the time any new ms_apply can see it.
    _mark_own_pointer_rule(client, wanted.partitions)
    load_functions(client)
    ttl = eid_ttl or DEFAULT_EID_TTL
    pipe = client.pipeline(transaction=False)
    for p in range(wanted.partitions):
        pipe.hset(
            keys.conf(p),
            mapping={
                "partitions": wanted.partitions,
                "max_event_bytes": wanted.max_event_bytes,
                "eid_ttl": ttl,
            },
        )
    # meta last: a reader that sees it can rely on functions and conf being in place.
    pipe.hset(
        keys.META,
        mapping={
            "partitions": wanted.partitions,
            "version": wanted.version,
            "max_event_bytes": wanted.max_event_bytes,
            "format": wanted.format,
        },
    )
    if require_signed is not None:
        for p in range(wanted.partitions):
            pipe.hset(keys.conf(p), "signed", "1" if require_signed else "0")
    pipe.execute()
    ensure_groups(client, wanted, wanted.version)
    return wanted


def _mark_own_pointer_rule(client: redis.Redis, partitions: int) -> None:
    """Record, once per partition, the feed id from which every pointer must be its log
    entry's own (feed id = log id, docs/security.md): pointers written before this
    version's ``ms_append`` keep working. ``0-0`` on a new feed: no exemption."""
    for p in range(partitions):
        try:
            info: Any = client.xinfo_stream(keys.feed(p))
            last = info["last-generated-id"]
            last = last.decode() if isinstance(last, bytes) else str(last)
        except ResponseError:
            last = "0-0"  # no feed yet
        client.hsetnx(keys.conf(p), "own_from", last)


def _drop_partition_keys(client: redis.Redis, partitions: int) -> None:
    """Remove the empty feeds and conf copies of a layout being replaced."""
    pipe = client.pipeline(transaction=False)
    for p in range(partitions):
        pipe.delete(keys.feed(p), keys.conf(p), keys.last_id(p))
    pipe.execute()
