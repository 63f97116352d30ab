"""``memstream replay``: rebuild projections from the logs while everything keeps running.

Full replay is blue/green (ARCHITECTURE, "Replay is blue/green"): version N keeps serving
while N+1 is built, and readers only ever see a finished version.

1. One atomic ``ms_replay_begin`` per partition creates group ``v<N+1>`` at the feed's
   end and copies ``heads`` as the cutoff, so every event is either at or below its
   owner's cutoff (folded here) or after the group's start (applied by live workers once
   ``next_version`` is set), never both and never neither.
2. The logs are folded up to the cutoffs with ``ms_write``; projections converge whatever
   the order, so the fold and the live workers may write N+1 at the same time.
3. Once group ``v<N+1>`` has caught up, ``version`` flips in one MULTI; N is kept for a
   grace period longer than the readers' version cache, its group is destroyed (so no
   late ``ms_apply`` can write to it: XACK on a missing group returns 0), then its keys go.

A replay that dies leaves markers in ``ms:meta`` (``next_version`` while building,
``retiring`` while deleting N) and stray ``v<k>`` groups; the next replay removes what
they name before it starts. One full replay runs at a time (``keys.REPLAY_LOCK``).

``--owner`` rebuilds one owner in place in the active version: see
:func:`memstream.workers.replay_owner.replay_owner`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.exceptions import LockError, ResponseError

from memstream.producers import keys
from memstream.producers.codec import DecodeError
from memstream.producers.deployment import Deployment
from memstream.producers.entry import decode_entry
from memstream.producers.errors import InvalidIdError, MemstreamError
from memstream.producers.settings import Settings
from memstream.projections.base import ApplyContext, Projection
from memstream.projections.ops import CHANNEL_OPS, Op, id_tuple, write_command
from memstream.projections.reader import VERSION_TTL_S
from memstream.projections.registry import default_projections

from .outage import OUTAGE_LIMIT_S, OutageRetry
from .plan import Fields, Planner
from .signing import Verifier

PAGE = 500
"""Log entries per XRANGE: large enough to amortise the round trip, small enough to keep
one reply (and the memory it takes) bounded for owners with long logs."""
BATCH_EVENTS = 200
"""Events per ``ms_write`` call: keeps each call's blocking time on Redis short."""
GRACE_S = 2 * VERSION_TTL_S + 0.5
"""How long N outlives the flip: a reader may trust its cached version this long."""
CATCHUP_TIMEOUT_S = 300.0
LOCK_TTL_S = 60.0
"""A replay that dies releases the lock this long after its last renewal."""

log = logging.getLogger("memstream.replay")


class ReplayError(MemstreamError):
    """Replay could not finish; the active version was left serving."""


@dataclass
class FoldStats:
    owners: int = 0
    events: int = 0
    """Events folded (their ops were written)."""
    undecodable: int = 0
    """Skipped: live workers dead-letter these too."""
    unknown: int = 0
    """Skipped: an event type this code does not know (counted by workers, not folded)."""
    failed: int = 0
    """Skipped: a projection raised on it (live workers dead-letter it)."""
    bad_owners: int = 0
    """Skipped: an owner id in ``heads`` that is not a valid id (written by hand)."""


@dataclass(frozen=True, slots=True)
class ReplaySummary:
    from_version: int
    to_version: int
    stats: FoldStats
    seconds: float
    owner: str | None = None

    @property
    def events_per_s(self) -> float:
        return self.stats.events / self.seconds if self.seconds > 0 else 0.0

    def text(self) -> str:
        s = self.stats
        what = (
            f"rebuilt owner {self.owner} in v{self.to_version}"
            if self.owner is not None
            else f"replayed v{self.from_version} -> v{self.to_version} (active: v{self.to_version})"
        )
        return (
            f"{what}: {s.owners} owners, {s.events} events in {self.seconds:.2f}s "
            f"({self.events_per_s:,.0f} events/s); skipped {s.undecodable} undecodable, "
            f"{s.unknown} unknown-type, {s.failed} failed"
        )


class Folder:
    """Reads logs in pages and turns each event into the ops of one version, exactly as a
    worker would (same planner, same settings). Shared by full and owner replay."""

    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        projections: Sequence[Projection] | None,
        version: int,
    ) -> None:
        self.client = client
        self.settings = settings
        self.version = version
        chosen = projections if projections is not None else default_projections()
        # event_writes never looks at deliveries; the bound only matters to plan().
        self.planner = Planner(chosen, settings, max_deliveries=1)
        self.stats = FoldStats()
        # One clock for the whole fold: an event whose TTL has passed writes nothing.
        self.now_ms = int(time.time() * 1000)
        self._ctx: dict[int, ApplyContext] = {}
        self.verifier = Verifier(client)  # skip what workers refuse (docs/security.md)

    def entries(self, p: int, owner: str, start: str, end: str) -> Iterator[tuple[str, Fields]]:
        """Log entries from ``start`` ('-' or an exclusive '(id') up to ``end`` inclusive."""
        # Cold tier: archived segments first, then the hot log, with no gap or duplicate.
        from memstream.tiering.hooks import log_entries

        yield from log_entries(self.client, self.settings, p, owner, start=start, end=end)

    def ops(self, p: int, owner: str, log_id: str, fields: Fields) -> list[Op] | None:
        """The event's ops in this version, or None (counted) when it folds to nothing."""
        try:
            if self.verifier.reason(p, owner, log_id, fields):
                raise DecodeError("sig", "is not ms_append's signature")
            event = decode_entry(owner, log_id, fields)
        except DecodeError:
            self.stats.undecodable += 1
            return None
        if not event.known:
            self.stats.unknown += 1
            return None
        ctx = self._ctx.get(p)
        if ctx is None:
            ctx = self._ctx[p] = ApplyContext(
                keys.Projection(p, self.version), self.settings, self.now_ms
            )
        try:
            writes = self.planner.event_writes(event, ctx)
        except Exception:  # a projection bug: workers dead-letter the event, so skip it too
            self.stats.failed += 1
            return None
        self.stats.events += 1
        # Notifications are for live changes; a fold of history must not replay them.
        return [op for op in writes.ops if op[0] not in CHANNEL_OPS]


class _Lease:
    """The replay lock, renewed while work goes on; lost only if we stall past its TTL."""

    def __init__(self, client: redis.Redis) -> None:
        self.lock = client.lock(keys.REPLAY_LOCK, timeout=LOCK_TTL_S, thread_local=False)
        self._next = 0.0

    def take(self) -> None:
        """Acquire the lock, or raise :class:`ReplayError` if another replay holds it."""
        if not self.lock.acquire(blocking=False):
            raise ReplayError(
                f"another replay is running (lock {keys.REPLAY_LOCK}); if it died, the lock "
                f"expires within {LOCK_TTL_S:.0f}s"
            )
        self._next = time.monotonic() + LOCK_TTL_S / 4

    def retake(self) -> None:
        """After an outage: renew the lock if it is still ours, else take it again (it
        lapsed while Redis was away, or Redis restarted without it)."""
        if self.lock.owned():
            self._reacquire()
        else:
            self.take()

    def renew(self) -> None:
        if time.monotonic() >= self._next:
            self._reacquire()

    def _reacquire(self) -> None:
        self.lock.reacquire()
        self._next = time.monotonic() + LOCK_TTL_S / 4

    def release(self) -> None:
        # Best effort: during an outage the lock simply expires after its TTL.
        with contextlib.suppress(LockError, redis.RedisError, MemstreamError):
            self.lock.release()


def read_deployment(client: redis.Redis) -> Deployment:
    raw: Any = client.hgetall(keys.META)
    return Deployment.from_meta(raw)


def where(client: redis.Redis) -> str:
    """``host:port`` of a client's pool, for log lines (never its credentials)."""
    pool = getattr(client, "connection_pool", None)
    if pool is None:  # a Cluster client: any node names it
        return f"cluster via {client.get_default_node().name}"  # type: ignore[attr-defined]
    kw = pool.connection_kwargs
    return str(kw.get("path") or f"{kw.get('host', 'localhost')}:{kw.get('port', 6379)}")


def run(client: redis.Redis, command: tuple[Any, ...]) -> Any:
    """Send one prebuilt command (FCALL ...): redis-py leaves execute_command untyped."""
    return client.execute_command(*command)  # type: ignore[no-untyped-call]


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


def _drop_version(client: redis.Redis, partitions: int, version: int) -> None:
    """Stop serving ``version`` (its groups go first, so no worker writes to it again),
    then delete its keys."""
    for p in range(partitions):
        with contextlib.suppress(ResponseError):
            client.xgroup_destroy(keys.feed(p), keys.group(version))
    delete_version(client, version)


def _purge_stale(client: redis.Redis, d: Deployment) -> None:
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
        _drop_version(client, d.partitions, version)
    client.hdel(keys.META, "retiring")


def _begin(client: redis.Redis, partitions: int, version: int) -> None:
    group = keys.group(version)
    for p in range(partitions):
        begin = ("FCALL", "ms_replay_begin", 3, keys.feed(p), keys.heads(p),
                 keys.cutoff(p, version), group)  # fmt: skip
        run(client, begin)
    # Only now may workers serve the new group: every partition has its cutoff.
    client.hset(keys.META, "next_version", version)


@contextlib.contextmanager
def _progress(show: bool, total: int, label: str) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(events_so_far)``, called once per owner; a rich bar on stderr."""
    if not show:
        yield lambda events: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("owners, {task.fields[events]:,} events"), TimeElapsedColumn(),
    )  # fmt: skip
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(label, total=total, events=0)
        yield lambda events: bar.update(task, advance=1, events=events)


def _fold_all(
    client: redis.Redis, folder: Folder, partitions: int, lease: _Lease, show: bool
) -> None:
    version = folder.version
    pipe = client.pipeline(transaction=False)
    for p in range(partitions):
        pipe.hlen(keys.cutoff(p, version))
    total = sum(int(n) for n in pipe.execute())
    with _progress(show, total, f"folding into v{version}") as advance:
        for p in range(partitions):
            pending: list[list[Op]] = []
            for raw_owner, raw_cut in client.hscan_iter(keys.cutoff(p, version), count=500):
                owner = raw_owner.decode("utf-8", "replace")
                try:
                    keys.check_id(owner)
                except InvalidIdError:
                    folder.stats.bad_owners += 1
                    continue
                folder.stats.owners += 1
                for log_id, fields in folder.entries(p, owner, "-", raw_cut.decode()):
                    ops = folder.ops(p, owner, log_id, fields)
                    if ops:
                        pending.append(ops)
                    if len(pending) >= BATCH_EVENTS:
                        run(client, write_command(pending))
                        pending = []
                        lease.renew()
                advance(folder.stats.events)
            if pending:  # a batch never mixes partitions: one call touches one slot
                run(client, write_command(pending))


def _caught_up(client: redis.Redis, p: int, group: str, target: tuple[int, int]) -> bool:
    feed = keys.feed(p)
    found = [g for g in _groups(client, feed) if g["name"] == group.encode()]
    if not found:
        raise ReplayError(f"group {group} vanished from {feed}: was the replay cleaned up?")
    if id_tuple(found[0]["last-delivered-id"]) < target:
        return False
    pending: Any = client.xpending_range(feed, group, min="-", max=f"{target[0]}-{target[1]}",
                                         count=1)  # fmt: skip
    return not pending


def _wait_caught_up(
    client: redis.Redis, partitions: int, version: int, timeout_s: float, lease: _Lease
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
        targets = {p: t for p, t in targets.items() if not _caught_up(client, p, group, t)}
        if not targets:
            return
        if time.monotonic() > deadline:
            raise ReplayError(
                f"v{version} did not catch up within {timeout_s:.0f}s on partitions "
                f"{sorted(targets)[:10]}: are `memstream worker` processes running? "
                f"v{version - 1} is still the active version; v{version} was removed"
            )
        lease.renew()
        time.sleep(0.05)


def _build(
    client: redis.Redis,
    settings: Settings,
    projections: Sequence[Projection] | None,
    lease: _Lease,
    show: bool,
) -> tuple[Deployment, Folder]:
    """Begin N+1 and fold every log into it. Not idempotent (a batch of counter writes
    sent twice counts twice), so a retry after an outage starts over: ``_purge_stale``
    first drops the half-built N+1, which never served a read."""
    d = read_deployment(client)
    _purge_stale(client, d)
    folder = Folder(client, settings, projections, d.version + 1)
    try:
        _begin(client, d.partitions, folder.version)
        _fold_all(client, folder, d.partitions, lease, show)
    except BaseException:
        _abandon(client, d.partitions, folder.version)
        raise
    return d, folder


def _abandon(client: redis.Redis, partitions: int, version: int) -> None:
    """Best effort: drop the half-built ``version`` unless it is the active one (a flip
    whose reply was lost). What stays behind, the next replay's ``_purge_stale`` drops."""
    with contextlib.suppress(Exception):
        if read_deployment(client).version != version:
            client.hdel(keys.META, "next_version")
            _drop_version(client, partitions, version)


def _flip(client: redis.Redis, old: int, new: int) -> None:
    """Make N+1 active in one MULTI; running it again changes nothing."""
    flip = client.pipeline(transaction=True)
    flip.hset(keys.META, mapping={"version": new, "retiring": old})
    flip.hdel(keys.META, "next_version")
    flip.execute()


def _retire(client: redis.Redis, partitions: int, old: int, new: int, grace_s: float) -> None:
    """Delete N once readers no longer trust a cached N; idempotent, so an outage simply
    runs it again (the grace then starts over, which only delays the deletion)."""
    time.sleep(grace_s)
    _drop_version(client, partitions, old)
    pipe = client.pipeline(transaction=False)
    for p in range(partitions):
        pipe.unlink(keys.cutoff(p, new))
    pipe.hdel(keys.META, "retiring")
    pipe.execute()


def replay_all(
    client: redis.Redis,
    settings: Settings | None = None,
    *,
    projections: Sequence[Projection] | None = None,
    grace_s: float = GRACE_S,
    catchup_timeout_s: float = CATCHUP_TIMEOUT_S,
    show_progress: bool = False,
    outage_limit_s: float = OUTAGE_LIMIT_S,
) -> ReplaySummary:
    """Build version N+1 from the logs while N serves, flip, then delete N.

    ``client`` is a blocking client; ``settings`` gives the planner's settings;
    ``projections`` defaults to the registered ones; ``grace_s`` is how long N outlives
    the flip; ``catchup_timeout_s`` bounds the wait for live workers to catch up on
    N+1; ``show_progress`` draws a progress bar on stderr. A Redis outage (restart,
    failover, timeout) is ridden out for up to ``outage_limit_s`` per outage: the fold
    starts over (see :func:`_build`), every later step is retried in place.
    """
    started = time.monotonic()
    retry = OutageRetry(log, f"replaying in Redis at {where(client)}", limit_s=outage_limit_s)
    lease = _Lease(client)
    retry.run(lease.take)
    try:
        d, folder = retry.run(
            lambda: _build(client, settings or Settings(), projections, lease, show_progress),
            before=lease.retake,
        )
        old, new = d.version, folder.version
        try:
            retry.run(
                lambda: _wait_caught_up(client, d.partitions, new, catchup_timeout_s, lease),
                before=lease.retake,
            )
            retry.run(lambda: _flip(client, old, new), before=lease.retake)
        except BaseException:
            _abandon(client, d.partitions, new)  # leave N serving alone
            raise
        retry.run(lambda: _retire(client, d.partitions, old, new, grace_s), before=lease.retake)
    finally:
        lease.release()
    return ReplaySummary(old, new, folder.stats, time.monotonic() - started)
