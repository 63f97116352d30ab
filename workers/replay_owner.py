"""``memstream replay --owner``: rebuild one owner's projections in place, in the active
version, while producers and workers keep running (the owner fence; see
:func:`replay_owner`)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import redis

from memstream.producers import keys
from memstream.producers.settings import Settings
from memstream.projections.base import Projection
from memstream.projections.notify import reset_record
from memstream.projections.ops import (
    RERUNNABLE_OPS,
    Op,
    RebuildKeys,
    id_tuple,
    op_keys,
    rebuild_command,
)

from .outage import OUTAGE_LIMIT_S, OutageRetry
from .replay import Folder, ReplayError, ReplaySummary, read_deployment, run, where

log = logging.getLogger("memstream.replay")


@dataclass
class _OwnerFold:
    """The fold of one owner up to ``head``, grown when the owner appends meanwhile."""

    folder: Folder
    p: int
    owner: str
    head: str = ""
    batches: list[list[Op]] = field(default_factory=list)
    owned: set[str] = field(default_factory=set)
    """Keys to delete before the fold runs: the owner's keys found by SCAN, plus every
    owner key the fold touches (keys an in-flight older event may be creating)."""

    def scan(self, client: redis.Redis) -> None:
        version = self.folder.version
        pattern = keys.owner_keys_pattern(self.p, version, self.owner)
        for raw in client.scan_iter(match=pattern, count=1000):
            key = raw.decode()
            if keys.key_owner(key, self.p, version) == self.owner:
                self.owned.add(key)

    def extend(self, head: str) -> None:
        if not head or (self.head and id_tuple(head) < id_tuple(self.head)):
            self.batches, self.head = [], ""  # log forgotten or rewritten: fold afresh
        if head:
            start = "(" + self.head if self.head else "-"
            for log_id, fields in self.folder.entries(self.p, self.owner, start, head):
                ops = self.folder.ops(self.p, self.owner, log_id, fields)
                if ops:
                    self.batches.append(self._keep(ops))
        self.head = head

    def _keep(self, ops: list[Op]) -> list[Op]:
        """Ops on the owner's keys all run (the keys are deleted first). An op on a key
        shared with other owners cannot be reset, so it runs only if running it again
        changes nothing (a counter or a stream append would count twice)."""
        kept = []
        for op in ops:
            touched = op_keys(op)
            mine = [k for k in touched if keys.key_owner(k, self.p, self.folder.version)
                    == self.owner]  # fmt: skip
            self.owned.update(mine)
            if len(mine) == len(touched) or op[0] in RERUNNABLE_OPS:
                kept.append(op)
        return kept


HEAD = re.compile(r"\d{1,20}-\d{1,20}")


def _checked_head(raw: bytes | None, p: int, owner: str) -> str:
    """The owner's head as a stream id, or "" for none. Only ``ms_append`` writes heads;
    anything else there was written by hand and would make every read of the log fail."""
    head = raw.decode("utf-8", "replace") if raw else ""
    if head and not HEAD.fullmatch(head):
        raise ReplayError(
            f"owner {owner}'s head in {keys.heads(p)} is {head[:40]!r}, not a stream id "
            f"(written by hand?): set it to the id of the last entry of "
            f"{keys.log(p, owner)} (XREVRANGE ... + - COUNT 1), then rebuild again"
        )
    return head


MAX_ATTEMPTS = 1000
"""Rebuild calls before giving up on an owner that keeps appending. Each call races the
owner's appends: it succeeds only if no append lands between the fold's last read and the
call, and that window holds the whole fold's encoding and transfer (the call carries every
op), so it grows with the owner's log. Against an owner appending every millisecond, runs
on this machine took up to 31 calls on one node, and more on a Cluster, whose client adds
its routing to each of the window's round trips: 50 was too few there (issue 14). A call
that loses costs the delta's fold and one round trip, so 1000 costs seconds at most."""


def replay_owner(
    client: redis.Redis,
    owner: str,
    settings: Settings | None = None,
    *,
    projections: Sequence[Projection] | None = None,
    max_attempts: int = MAX_ATTEMPTS,
    outage_limit_s: float = OUTAGE_LIMIT_S,
) -> ReplaySummary:
    """Rebuild ``owner``'s projections in the active version, in place, while producers
    and workers keep running.

    ``client`` is a blocking client, ``settings`` the planner's settings, ``projections``
    defaults to the registered ones, ``max_attempts`` bounds the retries while the owner
    keeps appending. A Redis outage is ridden out for up to ``outage_limit_s``: the
    rebuild starts over from a fresh fold, which is safe because one rebuild call is
    atomic and running it again leaves the same keys (see :func:`_rebuild`).
    """
    keys.check_id(owner)
    retry = OutageRetry(
        log, f"rebuilding owner {owner} in Redis at {where(client)}", limit_s=outage_limit_s
    )
    started = time.monotonic()
    summary = retry.run(
        lambda: _rebuild(client, owner, settings or Settings(), projections, max_attempts)
    )
    return replace(summary, seconds=time.monotonic() - started)


def _rebuild(
    client: redis.Redis,
    owner: str,
    settings: Settings,
    projections: Sequence[Projection] | None,
    max_attempts: int,
) -> ReplaySummary:
    """One rebuild of ``owner`` with the owner fence.

    One ``ms_rebuild_owner`` call checks that the owner's head is still the ``head`` the
    fold stopped at, deletes the owner's keys, runs the fold and sets the owner's fence to
    ``head``. ``ms_apply`` then acks without writing any of the owner's entries at or
    below the fence. Why no event is lost or applied twice:

    - Events <= head are in the fold. Applied before the call, their writes are deleted
      and re-made by it; applied after (pending, reclaimed, duplicated), they are fenced.
    - Events > head cannot have been applied before the call: ``heads`` is updated in
      the same atomic call as the log append, and the call checks it still equals head,
      so no such event existed yet. After the call they apply normally (above the fence).
    - A key that an in-flight event <= head could create after our SCAN is a key its own
      ops touch, and those ops are in the fold, so the key is among those deleted first.
      (An event whose TTL passed folds to nothing; what a worker wrote for it expires at
      that same TTL, which has passed.)

    If the owner appends between the fold and the call, the call refuses; we fold just
    the new events and try again. If a full replay flipped meanwhile, we start over in
    the new active version.
    """
    keys.check_id(owner)
    settings = settings or Settings()
    started = time.monotonic()
    fold: _OwnerFold | None = None
    head = ""
    for _ in range(max_attempts):
        if fold is None:
            d = read_deployment(client)
            p = keys.partition(owner, d.partitions)
            fold = _OwnerFold(Folder(client, settings, projections, d.version), p, owner)
            fold.scan(client)
            raw_head: Any = client.hget(keys.heads(p), owner)
            head = _checked_head(raw_head, p, owner)
        fold.extend(head)
        version = fold.folder.version
        fixed = RebuildKeys(keys.heads(fold.p), keys.fences(fold.p, version), keys.feed(fold.p))
        command = rebuild_command(
            fixed, keys.group(version), owner, head=fold.head, delete=fold.owned,
            batches=fold.batches,
        )  # fmt: skip
        status, value = run(client, command)
        if int(status) == 1:
            fold.folder.stats.owners = 1
            # Rebuilt in place, outside ms_apply: tell caching readers to drop the owner.
            client.spublish(keys.changes(fold.p), reset_record(owner, version))
            return ReplaySummary(version, version, fold.folder.stats,
                                 time.monotonic() - started, owner)  # fmt: skip
        if int(status) == 0:
            head = value.decode() if isinstance(value, bytes) else str(value)
            continue
        if read_deployment(client).version == version:
            raise ReplayError(
                f"group {keys.group(version)} is missing on {keys.feed(fold.p)} although "
                f"v{version} is active: run `memstream init` to recreate it"
            )
        fold = None  # a full replay flipped meanwhile: rebuild in the new active version
    raise ReplayError(
        f"owner {owner} kept appending during {max_attempts} rebuild attempts; try again"
    )
