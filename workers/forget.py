"""Forget an owner: delete everything that names it and leave one anonymous audit record.

``memstream forget OWNER --yes`` runs :func:`forget_owner`; an ``owner.forgotten`` event
files a request (:mod:`memstream.projections.notify`) that :func:`forget_requested` runs.

Order matters, so that nothing comes back:

1. One MULTI, under WATCH of the owner's log (an append meanwhile makes it start again):
   XACK the owner's feed entries in every group and XDEL them, so an entry a worker holds
   in memory is acked with XACK = 0 by ``ms_apply`` and writes nothing (the ack gate is
   the fence); DEL the log (replay finds nothing to fold) and the dedup records; remove
   the owner from ``heads``, every version's ``cutoff`` and ``fences``, the forget
   requests and the DLQ.
2. Rebuild the owner in the active version (``replay --owner``'s atomic delete-and-fold):
   it deletes every projection key of the owner and folds only what was appended after
   step 1, so a fresh log started meanwhile is kept whole. Keys of the owner left in
   other versions (a replay that died) are deleted outright.
3. Append the audit record (sha256 of the owner, time, counts) and publish a ``reset``
   change record so caching readers drop the owner.

Full replay is kept out by holding its lock for the duration: a replay folding the log
while it is deleted could write the owner back into the next version.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.exceptions import LockError, ResponseError, WatchError

from memstream.producers import keys
from memstream.producers.errors import MemstreamError
from memstream.producers.settings import Settings
from memstream.projections.base import Projection
from memstream.projections.notify import reset_record

from .replay import read_deployment
from .replay_owner import replay_owner

PAGE = 1000
ATTEMPTS = 50


class ForgetError(MemstreamError):
    """The forget could not run (a replay holds the lock, or the owner kept appending)."""


@dataclass(frozen=True, slots=True)
class ForgetResult:
    owner_hash: str
    entries: int
    """Log entries deleted."""
    keys: int
    """Keys deleted: projection keys in every version, dedup records and the log."""
    at_ms: int

    def text(self) -> str:
        return (
            f"forgot owner sha256:{self.owner_hash[:16]}...: {self.entries} log entries, "
            f"{self.keys} keys; audit record in {keys.forget_audit()}"
        )


def owner_hash(owner: str) -> str:
    return hashlib.sha256(owner.encode()).hexdigest()


def forget_owner(
    client: redis.Redis,
    owner: str,
    settings: Settings | None = None,
    *,
    projections: Sequence[Projection] | None = None,
) -> ForgetResult:
    """Delete everything of ``owner`` (see the module docstring for the order)."""
    keys.check_id(owner)
    settings = settings or Settings()
    lock = client.lock(keys.REPLAY_LOCK, timeout=120, thread_local=False)
    if not lock.acquire(blocking=True, blocking_timeout=5):
        raise ForgetError(f"a replay is running (lock {keys.REPLAY_LOCK}); try again later")
    try:
        d = read_deployment(client)
        p = keys.partition(owner, d.partitions)
        entries, dropped = _drop_log(client, p, owner, _versions(client, p, d.version))
        # Cold tier: the manifest and every archived object of the owner (before the
        # rebuild below, which would otherwise fold the archived segments back in).
        from memstream.tiering.hooks import forget_archive

        forget_archive(client, settings, p, owner)
        found = _owner_keys(client, p, owner)
        _drop_foreign_letters(client, owner, d.partitions, p)
        replay_owner(client, owner, settings, projections=projections)
        stale = [k for k, v in found if v != d.version]
        for i in range(0, len(stale), 500):
            client.unlink(*stale[i : i + 500])
    finally:
        with contextlib.suppress(LockError):
            lock.release()
    result = ForgetResult(owner_hash(owner), entries, dropped + len(found), int(time.time() * 1000))
    client.xadd(
        keys.forget_audit(),
        {"owner_sha256": result.owner_hash, "at_ms": str(result.at_ms),
         "entries": str(result.entries), "keys": str(result.keys)},
    )  # fmt: skip
    client.spublish(keys.changes(p), reset_record(owner, d.version))
    return result


def compact(client: redis.Redis) -> str:
    """Start the rewrites that drop forgotten data from Redis's persistence files: the
    AOF keeps every write until it is rewritten (BGREWRITEAOF), and the RDB snapshot
    keeps the data until the next save (BGSAVE). Both run in the background; a rewrite
    already running is reported, not an error. Copies made elsewhere (backups, replicas'
    files) are out of reach: see docs/security.md."""
    info: Any = client.info("persistence")
    done = []
    if int(info.get("aof_enabled", 0)):
        try:
            client.bgrewriteaof()
            done.append("AOF rewrite started")
        except ResponseError as e:
            done.append(f"AOF rewrite not started: {e}")
    try:
        client.bgsave(schedule=True)
        done.append("RDB snapshot started")
    except ResponseError as e:
        done.append(f"RDB snapshot not started: {e}")
    return "compact: " + "; ".join(done)


def forget_requested(client: redis.Redis, settings: Settings | None = None) -> list[ForgetResult]:
    """Run every forget filed by an ``owner.forgotten`` event (the worker's hook, or
    ``memstream forget --requested`` from cron)."""
    d = read_deployment(client)
    done = []
    for p in range(d.partitions):
        owners: Any = client.zrange(keys.forget_requests(p), 0, -1)
        for raw in owners:
            done.append(forget_owner(client, raw.decode(), settings))
    return done


def _versions(client: redis.Redis, p: int, active: int) -> set[int]:
    found = {active}
    with contextlib.suppress(ResponseError):
        for g in client.xinfo_groups(keys.feed(p)):
            version = keys.group_version(g["name"])
            if version is not None:
                found.add(version)
    return found


def _drop_log(client: redis.Redis, p: int, owner: str, versions: set[int]) -> tuple[int, int]:
    """Step 1, atomically: (log entries, keys) deleted."""
    log, feed, dlq = keys.log(p, owner), keys.feed(p), keys.dlq(p)
    for _ in range(ATTEMPTS):
        eids = list(client.scan_iter(match=keys.eid_pattern(p, owner), count=PAGE))
        eids += client.scan_iter(match=keys.retry_pattern(p, owner), count=PAGE)
        with client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(log)  # type: ignore[no-untyped-call]
                entries = int(pipe.xlen(log))
                pointers = [i for i, f in _stream(pipe, feed) if f.get(b"o") == owner.encode()]
                letters = [i for i, f in _stream(pipe, dlq) if _names(f, owner)]
                groups = [g["name"] for g in _groups(pipe, feed)]
                pipe.multi()
                for chunk in _chunks(pointers):
                    for group in groups:
                        pipe.xack(feed, group, *chunk)
                    pipe.xdel(feed, *chunk)
                for chunk in _chunks(letters):
                    pipe.xdel(dlq, *chunk)
                for chunk in _chunks(eids):
                    pipe.unlink(*chunk)
                pipe.delete(log)
                pipe.hdel(keys.heads(p), owner)
                for version in sorted(versions):
                    pipe.hdel(keys.cutoff(p, version), owner)
                    pipe.hdel(keys.fences(p, version), owner)
                pipe.zrem(keys.forget_requests(p), owner)
                pipe.execute()
                return entries, len(eids) + (1 if entries else 0)
            except WatchError:
                continue  # the owner appended meanwhile: collect again
    raise ForgetError(f"the owner kept appending during {ATTEMPTS} attempts; try again")


def _drop_foreign_letters(client: redis.Redis, owner: str, partitions: int, own: int) -> None:
    """Dead letters of pointers that named the owner from another partition's feed (a bad
    pointer lands in the DLQ of the feed it was in): selected by ``pointer_owner``."""
    name = owner.encode()
    for p in range(partitions):
        if p == own:
            continue  # done atomically with the log
        dlq = keys.dlq(p)
        found = [i for i, f in _stream(client, dlq) if f.get(b"pointer_owner") == name]
        for chunk in _chunks(found):
            client.xdel(dlq, *chunk)


def _owner_keys(client: redis.Redis, p: int, owner: str) -> list[tuple[bytes, int]]:
    """(key, version) of every projection key of ``owner`` in any version."""
    out = []
    for raw in client.scan_iter(match=keys.owner_pattern(p, owner), count=PAGE):
        where = keys.version_of_key(raw.decode("utf-8", "replace"))
        if where is not None and keys.key_owner(raw.decode(), *where) == owner:
            out.append((raw, where[1]))
    return out


def _stream(client: Any, key: str) -> Iterator[tuple[bytes, dict[bytes, bytes]]]:
    low = "-"
    while True:
        rows: Any = client.xrange(key, low, "+", count=PAGE)
        yield from rows
        if len(rows) < PAGE:
            return
        low = "(" + rows[-1][0].decode()


def _groups(client: Any, feed: str) -> list[dict[str, Any]]:
    try:
        return list(client.xinfo_groups(feed))
    except ResponseError:
        return []


def _names(fields: dict[bytes, bytes], owner: str) -> bool:
    """A dead letter of the owner: its ``owner`` field, or for a pointer too bad to parse
    the raw owner it named (``pointer_owner``). Never the reason text: a reason may quote
    anything, and a substring match deleted other owners' dead letters."""
    name = owner.encode()
    return fields.get(b"owner") == name or fields.get(b"pointer_owner") == name


def _chunks(items: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
