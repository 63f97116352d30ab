"""The tiering pass: pack old log entries into segments, upload, verify, then record and
trim in one atomic call (docs/tiering.md has the order of operations and why each crash
point is safe).

For each owner whose entries pass the ack gate (:mod:`.gate`) and the policy
(:mod:`.policy`), from the oldest hot entry on:

1. read up to one segment of entries and encode it (:mod:`.segment`);
2. upload it under the name :func:`.names.segment` builds from its first and last ids;
3. read it back and check its size and sha256 (a mismatch uploads again);
4. ``ms_tier_commit``: check the log still starts with exactly these entries and the
   manifest does not cover them, then add the segment to the manifest and trim them.

A crash before 4 leaves the entries hot and at most an unreferenced object (a re-run
builds the same name for the same entries and replaces it); 4 is atomic. A tier process
that loses a race at 4 (another one committed first) discards its upload unless the
manifest names that very object. An owner lease (``keys.tier_lease``) keeps two
processes from doing the same work; the check in 4 is what makes it safe without one.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis
from redis.exceptions import LockError

from memstream.producers import keys
from memstream.producers.deployment import Deployment
from memstream.producers.settings import Settings

from . import names, segment
from .archive import Archive
from .cold import cold_items
from .errors import ArchiveError, ArchiveUnavailableError, CorruptSegmentError
from .gate import Limit, archivable_bounds, tighter, xrange_max
from .manifest import Segment
from .policy import Policy

T = TypeVar("T")

LEASE_S = 120.0
"""An owner lease outlives the slowest segment upload many times; a dead process's
lease frees itself this long after it was taken."""
RETRY_ATTEMPTS = 5
THREADS = 4
"""Owners of one partition archived at once by one tier process."""


def retry(
    op: Callable[[], T],
    *,
    attempts: int = RETRY_ATTEMPTS,
    base_s: float = 0.2,
    cap_s: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``op``, retrying archive failures with capped exponential backoff and jitter.

    The tier loop's only retry policy, kept in this one function so a shared backoff
    module can replace it. Bad configuration is not retried (it raises at once)."""
    for attempt in range(attempts):
        try:
            return op()
        except (ArchiveUnavailableError, CorruptSegmentError):
            if attempt == attempts - 1:
                raise
            sleep(min(cap_s, base_s * 2**attempt) * random.uniform(0.5, 1.0))
    raise AssertionError("unreachable")


@dataclass
class PassSummary:
    owners: int = 0
    """Owners with at least one segment archived in this pass."""
    segments: int = 0
    entries: int = 0
    raw_bytes: int = 0
    """msgpack bytes of the archived entries, before compression."""
    stored_bytes: int = 0
    """Bytes written to the archive (compressed)."""
    lost_races: int = 0
    """Segments another process (or a forget) got to first; nothing was archived twice."""
    cold_values: int = 0
    """Projection values (episodes) moved to the archive, a pointer left in Redis."""
    errors: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def merge(self, other: PassSummary) -> None:
        for name in ("owners", "segments", "entries", "raw_bytes", "stored_bytes",
                     "lost_races", "cold_values"):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors += other.errors
        self.skipped += other.skipped

    @property
    def ratio(self) -> float:
        return self.raw_bytes / self.stored_bytes if self.stored_bytes else 0.0

    def text(self) -> str:
        rate = self.entries / self.seconds if self.seconds > 0 else 0.0
        line = (
            f"tiered {self.owners} owners: {self.segments} segments, {self.entries:,} entries, "
            f"{self.raw_bytes:,} bytes -> {self.stored_bytes:,} bytes compressed "
            f"({self.ratio:.1f}x) in {self.seconds:.2f}s ({rate:,.0f} entries/s)"
        )
        if self.cold_values:
            line += f"; {self.cold_values} episodes moved to the archive"
        if self.skipped:
            line += f"; skipped {len(self.skipped)} partitions ({self.skipped[0]})"
        if self.errors:
            line += f"; {len(self.errors)} errors, first: {self.errors[0]}"
        return line


def _run(client: redis.Redis, *command: Any) -> Any:
    return client.execute_command(*command)  # type: ignore[no-untyped-call]


class Tierer:
    """One tier process's work: :meth:`run_pass` archives what the policy allows."""

    def __init__(
        self,
        client: redis.Redis,
        archive: Archive,
        settings: Settings | None = None,
        policy: Policy | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        attempts: int = RETRY_ATTEMPTS,
        threads: int = THREADS,
    ) -> None:
        self.attempts = attempts
        self.threads = threads
        self.client = client
        self.archive = archive
        self.settings = settings or Settings()
        self.policy = policy or Policy.from_settings(self.settings)
        self.sleep = sleep

    def run_pass(self, advance: Callable[[int, int], None] | None = None) -> PassSummary:
        """Archive every owner's eligible entries once. ``advance(partitions_done,
        entries_so_far)`` is called after each partition (the progress bar)."""
        started = time.monotonic()
        summary = PassSummary()
        raw: Any = self.client.hgetall(keys.META)
        d = Deployment.from_meta(raw)
        if self.policy.active:
            for p in range(d.partitions):
                try:
                    self._partition(p, d, summary)
                except (ArchiveError, redis.RedisError) as e:
                    summary.errors.append(f"partition {p}: {e}")
                if advance is not None:
                    advance(p + 1, summary.entries)
        summary.seconds = time.monotonic() - started
        self._record(summary)
        return summary

    def _record(self, summary: PassSummary) -> None:
        now = int(time.time() * 1000)
        fields: dict[Any, Any] = {"last_pass_ms": now, "last_pass": summary.text(),
                                  "failing": 1 if summary.errors else 0}  # fmt: skip
        if summary.errors:
            fields.update(last_error=summary.errors[0], last_error_ms=now)
        self.client.hset(keys.TIER_STATUS, mapping=fields)
        if summary.errors:
            self.client.hincrby(keys.TIER_STATUS, "errors", len(summary.errors))

    def _partition(self, p: int, d: Deployment, summary: PassSummary) -> None:
        bounds = archivable_bounds(self.client, p, d.next_version)
        if bounds.skipped:
            summary.skipped.append(f"partition {p}: {bounds.skipped}")
            return
        age: Limit | None = None
        if self.policy.older_than_s is not None:
            ms = int(time.time() * 1000 - self.policy.older_than_s * 1000)
            age = ((max(ms, 0), 0), False)
        work: list[tuple[str, Limit]] = []
        for owner in sorted(bounds.upto):
            limit = bounds.end(owner)
            if limit is None:
                continue
            limit = tighter(limit, age)
            if limit == ((0, 0), False):
                continue
            try:
                keys.check_id(owner)
            except ValueError:
                continue  # a hand-written heads field: not ours to archive
            work.append((owner, limit))

        def one(item: tuple[str, Limit]) -> PassSummary:
            part = PassSummary()
            try:
                self._owner(p, item[0], item[1], part)
            except ArchiveError as e:
                part.errors.append(f"owner {item[0]}: {e}")
            return part

        # Owners are independent: a few at once overlap one's upload (fsync, HTTP) with
        # another's encoding and commit. zstd and sha256 release the GIL.
        if self.threads > 1 and len(work) > 1:
            with ThreadPoolExecutor(max_workers=self.threads) as pool:
                parts = list(pool.map(one, work))
        else:
            parts = [one(item) for item in work]
        for part in parts:
            summary.merge(part)
        if age is not None:
            self._cold_values(keys.Projection(p, d.version), sorted(bounds.upto), age, summary)

    def _cold_values(
        self, pk: keys.Projection, owners: list[str], age: Limit, summary: PassSummary
    ) -> None:
        """Episodes written by events older than the policy's age go to the archive,
        with a pointer left in Redis (:mod:`.cold`)."""
        for owner in owners:
            try:
                keys.check_id(owner)
                moved = cold_items(self.client, self.archive, pk, owner, kind="episode",
                                   older_than_ms=age[0][0])  # fmt: skip
                summary.cold_values += moved
            except (ArchiveError, ValueError) as e:
                summary.errors.append(f"owner {owner}'s episodes: {e}")

    def _owner(self, p: int, owner: str, limit: Limit, summary: PassSummary) -> None:
        lease = self.client.lock(keys.tier_lease(p, owner), timeout=LEASE_S, thread_local=False)
        if not lease.acquire(blocking=False):
            return  # another tier process is archiving this owner now
        try:
            log = keys.log(p, owner)
            budget: int | None = None
            if self.policy.keep_last is not None:
                budget = int(self.client.xlen(log)) - self.policy.keep_last
            archived = False
            while budget is None or budget > 0:
                count = (
                    self.policy.max_entries
                    if budget is None
                    else min(budget, self.policy.max_entries)
                )
                fetched = _run(self.client, "FCALL_RO", "ms_tier_read", 1, log,
                               xrange_max(limit), count)  # fmt: skip
                rows = self._cut(fetched)
                if not rows:
                    break
                if not self._segment(p, owner, rows, summary):
                    break
                archived = True
                if len(fetched) < count:
                    break  # the bound is reached: no need to ask again
                if budget is not None:
                    budget -= len(rows)
                lease.reacquire()
            if archived:
                summary.owners += 1
                self._collect(p, owner)
        finally:
            with contextlib.suppress(LockError):
                lease.release()

    def _cut(self, rows: list[Any]) -> list[Any]:
        """Keep the leading rows that fit in one segment's raw-byte budget (at least one)."""
        size, cap = 0, self.policy.max_raw_bytes
        for i, (log_id, flat) in enumerate(rows):
            size += 16 + len(log_id) + 4 * len(flat) + sum(map(len, flat))
            if size > cap and i > 0:
                return rows[:i]
        return rows

    def _segment(self, p: int, owner: str, rows: list[Any], summary: PassSummary) -> bool:
        """Upload, verify and commit one segment; False when another process won."""
        first, last = rows[0][0].decode(), rows[-1][0].decode()
        enc = segment.encode(owner, [[i.decode(), flat] for i, flat in rows])
        name = names.segment(p, owner, first, last)

        def upload() -> None:
            self.archive.put(name, enc.data)
            # Verified as stored: the bytes read back must have our size and sha256.
            segment.check(name, self.archive.get(name), size=len(enc.data), digest=enc.sha256)

        retry(upload, attempts=self.attempts, sleep=self.sleep)
        seg = Segment(first, last, len(rows), len(enc.data), enc.raw_size, enc.sha256, name)
        reply = _run(
            self.client, "FCALL", "ms_tier_commit", 3, keys.log(p, owner),
            keys.manifest(p, owner), keys.cold_stats(p), first, last, len(rows),
            seg.first_sortable, seg.member(), seg.size, seg.raw,
        )  # fmt: skip
        if int(reply[0]) != 1:
            summary.lost_races += 1
            if not self._named(p, owner, seg):
                with contextlib.suppress(ArchiveError):
                    self.archive.delete(name)
            return False
        summary.segments += 1
        summary.entries += len(rows)
        summary.raw_bytes += enc.raw_size
        summary.stored_bytes += len(enc.data)
        return True

    def _collect(self, p: int, owner: str) -> None:
        """Delete the owner's segment objects that no manifest member names and that lie
        wholly at or below the newest recorded segment (uploads of a process that crashed
        before its commit). No commit can ever record them: ``ms_tier_commit`` refuses
        what the manifest covers, and a process that loses that way deletes its upload
        itself. Objects beyond the newest segment may be in flight, so they stay."""
        members: Any = self.client.zrange(keys.manifest(p, owner), 0, -1)
        segs = [Segment.parse(m) for m in members]
        if not segs:
            return
        named, newest = {s.name for s in segs}, segs[-1].last_sortable
        for info in list(self.archive.list(names.owner_prefix(p, owner) + "log/")):
            parsed = names.parse_segment(info.name)
            if parsed is not None and info.name not in named and parsed[3] <= newest:
                self.archive.delete(info.name)

    def _named(self, p: int, owner: str, seg: Segment) -> bool:
        """Whether the manifest names ``seg``'s object (whoever committed it): then the
        object is in use and must stay, even though this process lost the commit."""
        low = f"[{seg.last_sortable}|"
        found: Any = self.client.zrange(keys.manifest(p, owner), low, low + "\xff",
                                        bylex=True)  # fmt: skip
        return any(Segment.parse(m).name == seg.name for m in found)
