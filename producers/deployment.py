"""The deployment parameters stored in ``ms:meta``, read once per client."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .errors import NotInitialisedError

FORMAT = 1
"""Wire format of log entries; bumped only with an incompatible contract change."""

DEFAULT_MAX_EVENT_BYTES = 1_048_576
DEFAULT_EID_TTL = 86_400
"""Dedup window: a retry is almost always within seconds; a day covers an outbox that
flushes after a long outage without keeping one key per append forever."""


@dataclass(frozen=True, slots=True)
class Deployment:
    partitions: int
    version: int
    max_event_bytes: int
    format: int = FORMAT
    next_version: int | None = None

    @classmethod
    def from_meta(cls, raw: Mapping[bytes, bytes]) -> Deployment:
        if not raw or b"partitions" not in raw:
            raise NotInitialisedError("ms:meta is missing: run `memstream init` first")
        nxt = raw.get(b"next_version")
        return cls(
            partitions=int(raw[b"partitions"]),
            version=int(raw.get(b"version", b"1")),
            max_event_bytes=int(raw.get(b"max_event_bytes", DEFAULT_MAX_EVENT_BYTES)),
            format=int(raw.get(b"format", FORMAT)),
            next_version=int(nxt) if nxt else None,
        )
