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

import redis
from redis.exceptions import LockError

from memstream.producers import keys
from memstream.producers.deployment import Deployment
from memstream.producers.errors import InvalidIdError, MemstreamError
from memstream.producers.settings import Settings
from memstream.projections.base import Projection
from memstream.projections.ops import Op, write_command
from memstream.projections.reader import VERSION_TTL_S

from . import versions
from .fold import Folder, FoldStats, ReplayError, ReplaySummary, read_deployment, run, where
from .outage import OUTAGE_LIMIT_S, OutageRetry
from .versions import delete_version

__all__ = [
    "FoldStats",
    "Folder",
    "ReplayError",
    "ReplaySummary",
    "delete_version",
    "read_deployment",
    "replay_all",
    "run",
    "where",
]

BATCH_EVENTS = 200
"""Events per ``ms_write`` call: keeps each call's blocking time on Redis short."""
GRACE_S = 2 * VERSION_TTL_S + 0.5
"""How long N outlives the flip: a reader may trust its cached version this long."""
CATCHUP_TIMEOUT_S = 300.0
LOCK_TTL_S = 60.0
"""A replay that dies releases the lock this long after its last renewal."""

log = logging.getLogger("memstream.replay")


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


def _build(
    client: redis.Redis,
    settings: Settings,
    projections: Sequence[Projection] | None,
    lease: _Lease,
    show: bool,
) -> tuple[Deployment, Folder]:
    """Begin N+1 and fold every log into it. Not idempotent (a batch of counter writes
    sent twice counts twice), so a retry after an outage starts over:
    ``versions.purge_stale`` first drops the half-built N+1, which never served a read."""
    d = read_deployment(client)
    versions.purge_stale(client, d)
    folder = Folder(client, settings, projections, d.version + 1)
    try:
        versions.begin(client, d.partitions, folder.version)
        _fold_all(client, folder, d.partitions, lease, show)
    except BaseException:
        versions.abandon(client, d.partitions, folder.version)
        raise
    return d, folder


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
                lambda: versions.wait_caught_up(
                    client, d.partitions, new, catchup_timeout_s, lease.renew
                ),
                before=lease.retake,
            )
            retry.run(lambda: versions.flip(client, old, new), before=lease.retake)
        except BaseException:
            versions.abandon(client, d.partitions, new)  # leave N serving alone
            raise
        retry.run(
            lambda: versions.retire(client, d.partitions, old, new, grace_s), before=lease.retake
        )
    finally:
        lease.release()
    return ReplaySummary(old, new, folder.stats, time.monotonic() - started)
