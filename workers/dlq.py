"""The dead-letter queues: list, retry (re-queue) and drop entries.

A DLQ entry exists only when its event's writes never ran in its group: the worker
writes it instead of the writes, under the same XACK gate. Retrying therefore adds a
fresh (owner, log id) pointer to the partition's feed and deletes the DLQ entry, in one
MULTI under WATCH, so two operators retrying at once re-queue it once, and a crash
leaves it either still dead or re-queued, never both.

A re-queued pointer reaches every group on the feed. That is right when the entry's
group is the only one, and wrong while a replay builds a second version (the other
group may have applied the event already, and counters would count it twice), so
retries wait until the replay has finished.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import redis
from redis.exceptions import WatchError

from memstream.producers import keys
from memstream.producers.deployment import Deployment
from memstream.producers.errors import InvalidIdError, MemstreamError
from memstream.projections.ops import id_tuple

from .deploy import read_deployment

PAGE = 500
_STREAM_ID = re.compile(r"\d{1,20}-\d{1,20}")


RETRY_TTL_S = 7 * 86_400
"""How long a re-queued pointer stays applicable (its one-shot record's life)."""


class DlqError(MemstreamError):
    """A DLQ reference is malformed, unknown or ambiguous, or retry is unsafe now."""


def _text(raw: object) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One DLQ entry; ``ref`` (``P:ID``) names it across partitions."""

    partition: int
    id: str
    feed_id: str
    owner: str
    log_id: str
    group: str
    deliveries: int
    reason: str

    @property
    def ref(self) -> str:
        return f"{self.partition}:{self.id}"

    @classmethod
    def from_entry(cls, p: int, raw_id: object, fields: dict[bytes, bytes]) -> DeadLetter:
        def get(name: str) -> str:
            return _text(fields.get(name.encode(), b""))

        deliveries = get("deliveries")
        return cls(
            partition=p, id=_text(raw_id), feed_id=get("feed_id"), owner=get("owner"),
            log_id=get("log_id"), group=get("group"),
            deliveries=int(deliveries) if deliveries.isdigit() else 0, reason=get("reason"),
        )  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, **asdict(self)}


def _partitions(deployment: Deployment, partition: int | None) -> range:
    if partition is None:
        return range(deployment.partitions)
    if not 0 <= partition < deployment.partitions:
        raise DlqError(f"partition must be between 0 and {deployment.partitions - 1}")
    return range(partition, partition + 1)


def iter_entries(client: redis.Redis, partition: int | None = None) -> Iterator[DeadLetter]:
    """Every DLQ entry, partition by partition, oldest first; pages through big queues."""
    for p in _partitions(read_deployment(client), partition):
        start = "-"
        while True:
            page: Any = client.xrange(keys.dlq(p), min=start, max="+", count=PAGE)
            for raw_id, fields in page:
                yield DeadLetter.from_entry(p, raw_id, fields)
            if len(page) < PAGE:
                break
            start = f"({_text(page[-1][0])}"


def list_entries(
    client: redis.Redis, *, partition: int | None = None, limit: int = 50
) -> tuple[list[DeadLetter], int]:
    """The oldest ``limit`` entries across the chosen partitions, and the total count."""
    if limit < 1:
        raise DlqError("limit must be at least 1")
    parts = _partitions(read_deployment(client), partition)
    pipe = client.pipeline(transaction=False)
    for p in parts:
        pipe.xlen(keys.dlq(p))
        pipe.xrange(keys.dlq(p), count=limit)
    replies = pipe.execute()
    total, found = 0, list[DeadLetter]()
    for p, length, rows in zip(parts, replies[0::2], replies[1::2], strict=True):
        total += int(length)
        found.extend(DeadLetter.from_entry(p, raw_id, fields) for raw_id, fields in rows)
    found.sort(key=lambda d: (id_tuple(d.id), d.partition))
    return found[:limit], total


def parse_ref(text: str, partition: int | None = None) -> tuple[int | None, str]:
    """``P:ID`` or a bare ``ID`` (then ``partition``, or None to search every one)."""
    p_text, sep, entry_id = text.rpartition(":")
    if sep and not p_text.isdigit():
        raise DlqError(f"bad DLQ reference {text!r}: expected P:ID or ID")
    if not _STREAM_ID.fullmatch(entry_id):
        raise DlqError(f"bad DLQ id {entry_id!r}: expected a stream id like 1700000000000-0")
    p = int(p_text) if sep else partition
    if sep and partition is not None and p != partition:
        raise DlqError(f"{text} names partition {p}, but --partition is {partition}")
    return p, entry_id


def resolve(
    client: redis.Redis, refs: Sequence[str], partition: int | None = None
) -> list[DeadLetter]:
    """Look the references up; every one must name exactly one existing entry."""
    deployment = read_deployment(client)
    wanted = [parse_ref(ref, partition) for ref in refs]
    lookups = [
        (ref, p, entry_id)
        for ref, (named, entry_id) in zip(refs, wanted, strict=True)
        for p in _partitions(deployment, named)
    ]
    pipe = client.pipeline(transaction=False)
    for _, p, entry_id in lookups:
        pipe.xrange(keys.dlq(p), min=entry_id, max=entry_id, count=1)
    hits: dict[str, list[DeadLetter]] = {ref: [] for ref in refs}
    for (ref, p, _), rows in zip(lookups, pipe.execute(), strict=True):
        hits[ref].extend(DeadLetter.from_entry(p, raw_id, fields) for raw_id, fields in rows)
    out = []
    for ref in refs:
        found = hits[ref]
        if not found:
            raise DlqError(f"no DLQ entry {ref}")
        if len(found) > 1:
            where = ", ".join(d.ref for d in found)
            raise DlqError(f"{ref} is ambiguous ({where}): name it as P:ID or use --partition")
        out.append(found[0])
    return out


@dataclass(frozen=True, slots=True)
class RetryOutcome:
    letter: DeadLetter
    requeued: bool
    detail: str
    """The new feed id when re-queued, else why it was skipped."""


def check_retry_safe(deployment: Deployment) -> None:
    if deployment.next_version is not None:
        raise DlqError(
            f"a replay is building v{deployment.next_version}: a re-queued pointer would reach "
            "both versions' groups, and the one that already applied the event would count "
            "it twice. Retry once the replay has finished."
        )


def _unfit(client: redis.Redis, d: DeadLetter, deployment: Deployment) -> str | None:
    """Why re-queuing ``d`` cannot help (it would only dead-letter again), else None."""
    active = keys.group(deployment.version)
    if not d.owner or not d.log_id:
        return "the feed pointer itself was bad: nothing to re-queue (drop it)"
    if d.group != active:
        return f"dead-lettered in {d.group}, not the active {active}: replay rebuilt it"
    try:
        owner_p = keys.partition(d.owner, deployment.partitions)
    except InvalidIdError:
        return f"owner {d.owner!r} is not a valid id"
    if owner_p != d.partition or not _STREAM_ID.fullmatch(d.log_id):
        return "the entry's owner or log id does not fit its partition"
    if not client.xrange(keys.log(d.partition, d.owner), d.log_id, d.log_id, count=1):
        return f"log entry {d.log_id} of {d.owner} is still missing"
    return None


def _requeue(client: redis.Redis, d: DeadLetter) -> str | None:
    """Atomically add a fresh pointer and delete the DLQ entry; None if it was gone."""
    dlq, feed = keys.dlq(d.partition), keys.feed(d.partition)
    with client.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(dlq)  # type: ignore[no-untyped-call]
                if not pipe.xrange(dlq, d.id, d.id, count=1):
                    return None
                pipe.multi()
                # The new pointer is not the entry's own (its feed id differs from the log
                # id): the one-shot record tells ms_apply it is a re-queue, not a forgery.
                pipe.set(keys.retry(d.partition, d.owner, d.log_id), "1", ex=RETRY_TTL_S)
                pipe.xadd(feed, {"o": d.owner, "l": d.log_id})
                pipe.xdel(dlq, d.id)
                _, new_id, _ = pipe.execute()
                return _text(new_id)
            except WatchError:
                continue  # a worker dead-lettered something meanwhile: look again


def retry(client: redis.Redis, letters: Iterable[DeadLetter]) -> list[RetryOutcome]:
    """Re-queue each entry whose cause can have been fixed; say why for the others."""
    deployment = read_deployment(client)
    check_retry_safe(deployment)
    out = []
    for d in letters:
        why = _unfit(client, d, deployment)
        if why is not None:
            out.append(RetryOutcome(d, False, why))
            continue
        new_id = _requeue(client, d)
        if new_id is None:
            out.append(RetryOutcome(d, False, "already gone from the DLQ"))
        else:
            out.append(RetryOutcome(d, True, new_id))
    return out


def drop(client: redis.Redis, letters: Iterable[DeadLetter]) -> int:
    """Delete the entries; return how many were still there."""
    pipe = client.pipeline(transaction=False)
    count = 0
    for d in letters:
        pipe.xdel(keys.dlq(d.partition), d.id)
        count += 1
    return sum(int(n) for n in pipe.execute()) if count else 0
