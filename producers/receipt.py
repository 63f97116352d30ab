"""What an append returns: enough to find the entry again and to wait for its effect."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Receipt:
    """``Reader.wait(receipt)`` uses ``partition`` and ``feed_id`` for read-your-writes.

    ``pending`` is True when Redis was out of reach and the append went to the producer's
    durable outbox (at ``outbox``): it is stored on this machine and will be sent, in
    order, by the outbox's flusher; ``log_id`` and ``feed_id`` are empty and ``partition``
    is -1 until then. ``Reader.wait`` resolves a pending receipt through its ``eid``.
    """

    owner: str
    partition: int
    log_id: str
    feed_id: str
    eid: str | None = None
    pending: bool = False
    outbox: str | None = None
