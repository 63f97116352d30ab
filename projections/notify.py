"""Change notifications published by the ack-gated apply (filled in by issue 4)."""

from __future__ import annotations

from memstream.producers.entry import StoredEvent

from .base import ApplyContext
from .ops import Writes


def change_record(event: StoredEvent, ctx: ApplyContext, writes: Writes) -> None:
    """Append the event's change notification, if any, to ``writes``."""
    return None
