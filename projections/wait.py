"""Read-your-writes from consumer-group state alone.

An entry is done for a group when the group has delivered past it and it is no longer
pending: the ack that removed it from the PEL ran in the same call as its writes. Whether
it was applied or dead-lettered is then read from the partition's DLQ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

from memstream.producers import keys
from memstream.producers.errors import MemstreamError
from memstream.producers.receipt import Receipt

from .base import Query
from .ops import id_tuple

Status = Literal["applied", "dead_lettered"]


class WaitTimeoutError(MemstreamError, TimeoutError):
    """The entry was not applied in time (no worker running, or far behind)."""


@dataclass(frozen=True, slots=True)
class WaitResult:
    status: Status
    reason: str | None = None

    @property
    def applied(self) -> bool:
        return self.status == "applied"


def progress(receipt: Receipt, version: int) -> Query[bool]:
    """True once the version's group has delivered past the entry and it is not pending."""
    feed, group = keys.feed(receipt.partition), keys.group(version)

    def parse(replies: list[Any]) -> bool:
        groups, pending = replies
        if isinstance(groups, Exception) or isinstance(pending, Exception):
            return False
        for g in groups:
            name = g["name"].decode() if isinstance(g["name"], bytes) else g["name"]
            if name == group:
                delivered = id_tuple(g["last-delivered-id"]) >= id_tuple(receipt.feed_id)
                return delivered and not pending
        return False

    commands = [
        ("XINFO GROUPS", feed),
        ("XPENDING", feed, group, receipt.feed_id, receipt.feed_id, 1),
    ]
    return Query(commands, parse)


def resolve_pending(receipt: Receipt, partitions: int) -> Query[Receipt | None]:
    """A pending receipt's ids from its eid record (``ms_append`` stores ``"<log> <feed>"``
    there when it writes), or None while the outbox has not flushed it."""
    assert receipt.eid is not None
    p = keys.partition(receipt.owner, partitions)

    def parse(replies: list[Any]) -> Receipt | None:
        seen = replies[0]
        if not isinstance(seen, bytes | str):
            return None
        text = seen.decode() if isinstance(seen, bytes) else seen
        log_id, _, feed_id = text.partition(" ")
        return Receipt(receipt.owner, p, log_id, feed_id, receipt.eid)

    return Query([("GET", keys.eid(p, receipt.owner, receipt.eid))], parse)


DLQ_PAGE = 200


def dead_letter(receipt: Receipt, version: int, start: str | None = None) -> Query[WaitResult]:
    """Look for the entry in the DLQ, from the time it was appended onwards."""
    dlq, group = keys.dlq(receipt.partition), keys.group(version)
    first = start or f"{id_tuple(receipt.feed_id)[0]}-0"

    def parse(replies: list[Any]) -> WaitResult | Query[WaitResult]:
        rows = replies[0]
        for _, fields in rows:
            if (
                fields.get(b"feed_id") == receipt.feed_id.encode()
                and fields.get(b"group") == group.encode()
            ):
                return WaitResult("dead_lettered", fields.get(b"reason", b"").decode())
        if len(rows) == DLQ_PAGE:
            ms, seq = id_tuple(rows[-1][0])
            return dead_letter(receipt, version, f"{ms}-{seq + 1}")
        return WaitResult("applied")

    return Query([("XRANGE", dlq, first, "+", "COUNT", DLQ_PAGE)], parse)


def outcome(receipt: Receipt, version: int) -> Query[WaitResult | None]:
    """:func:`progress` and :func:`dead_letter` in one round trip: the result once the
    entry is done, None while it is not. The DLQ is read on every look, even before the
    entry is done: an empty page costs less than a second round trip on the look that
    finds it done, which is the one a waiter is waiting for."""
    done, dead = progress(receipt, version), dead_letter(receipt, version)
    n = len(done.commands)

    def parse(replies: list[Any]) -> WaitResult | Query[WaitResult | None] | None:
        if not done.parse(replies[:n]):
            return None
        # A full DLQ page asks for the next one: a Query[WaitResult] is a valid
        # Query[WaitResult | None] follow-up (its parse never returns None).
        return cast("WaitResult | Query[WaitResult | None]", dead.parse(replies[n:]))

    return Query([*done.commands, *dead.commands], parse)


def timed_out(receipt: Receipt, timeout: float, failing: Exception | None) -> WaitTimeoutError:
    """What ``Reader.wait`` and ``AsyncReader.wait`` raise when ``timeout`` passed;
    ``failing`` is the transient error of the last look, if it failed."""
    what = "flushed from the outbox" if receipt.pending else "applied"
    why = f" ({failing})" if failing is not None else ""
    return WaitTimeoutError(
        f"entry {receipt.feed_id or receipt.eid} of {receipt.owner} not {what} "
        f"after {timeout}s{why}"
    )


def next_delay(delay: float, receipt: Receipt, failing: Exception | None) -> float:
    """The pause before the next look. A low cap while waiting for a worker: each look
    is two cheap reads, and a coarse schedule would add its own wait to read-your-writes
    latency. Waiting for an outbox flush (or for Redis) is waiting for Redis to come
    back: poll gently."""
    return min(delay * 2, 0.05 if receipt.pending or failing else 0.002)
