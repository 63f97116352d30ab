"""What a tier pass archives, and how big a segment gets."""

from __future__ import annotations

import re
from dataclasses import dataclass

from memstream.producers.errors import InvalidInputError
from memstream.producers.settings import Settings

MAX_ENTRIES = 4096
"""Entries per segment at most: a read of one cold entry decompresses its segment (about
a millisecond for 4,096 chat messages), and the verify-and-trim call checks every id of
the segment inside Redis, so it stays short too."""
MAX_RAW_BYTES = 4 * 1024 * 1024
"""msgpack bytes per segment at most, before compression: bounds memory per segment in
the tier process and in a reader's segment cache whatever the event size."""

_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w)?")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, None: 1}


def parse_duration(text: str, field: str = "--older-than") -> float:
    """``7d``, ``12h``, ``30m``, ``0s``, ``500ms`` or plain seconds -> seconds."""
    m = _DURATION.fullmatch(text.strip())
    if m is None:
        raise InvalidInputError(field, "must be a duration like 7d, 12h, 30m, 45s or 0s", text)
    return int(m.group(1)) * _UNIT[m.group(2)]


@dataclass(frozen=True, slots=True)
class Policy:
    """Archive an owner's entries older than ``older_than_s`` and/or beyond its newest
    ``keep_last``; with both set an entry must satisfy both to go. None switches a rule off;
    with both off nothing is archived (the ack gate still applies in every case)."""

    older_than_s: float | None = 7 * 86400
    keep_last: int | None = None
    max_entries: int = MAX_ENTRIES
    max_raw_bytes: int = MAX_RAW_BYTES

    @classmethod
    def from_settings(
        cls, settings: Settings, *, older_than: str | None = None, keep_last: int | None = None
    ) -> Policy:
        """The settings' policy; when either option is given (the command line's
        ``--older-than`` / ``--keep-last``), the options alone make the policy."""
        age: float | None = settings.tier_older_than_s
        keep = settings.tier_keep_last
        if older_than is not None or keep_last is not None:
            age = parse_duration(older_than) if older_than is not None else None
            keep = keep_last
        if keep is not None and keep < 0:
            raise InvalidInputError("--keep-last", "must be >= 0", keep)
        return cls(older_than_s=age, keep_last=keep)

    @property
    def active(self) -> bool:
        return self.older_than_s is not None or self.keep_last is not None
