"""What an append returns: enough to find the entry again and to wait for its effect."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Receipt:
    """``Reader.wait(receipt)`` uses ``partition`` and ``feed_id`` for read-your-writes."""

    owner: str
    partition: int
    log_id: str
    feed_id: str
