"""The cold tier: archive old log segments to object storage, verified before trim, and
read them back through one continuous log (docs/tiering.md).

Importing :mod:`memstream.producers` never imports this package (boto3, zstandard).
"""

from __future__ import annotations

from .archive import Archive, ObjectInfo, open_archive
from .cache import SegmentCache
from .errors import (
    ArchiveConfigError,
    ArchiveError,
    ArchiveUnavailableError,
    CorruptSegmentError,
    ObjectMissingError,
)
from .manifest import Segment
from .policy import Policy, parse_duration
from .readthrough import AsyncColdLog, ColdLog
from .tier import PassSummary, Tierer

__all__ = [
    "Archive",
    "ArchiveConfigError",
    "ArchiveError",
    "ArchiveUnavailableError",
    "AsyncColdLog",
    "ColdLog",
    "CorruptSegmentError",
    "ObjectInfo",
    "ObjectMissingError",
    "PassSummary",
    "Policy",
    "Segment",
    "SegmentCache",
    "Tierer",
    "open_archive",
    "parse_duration",
]
