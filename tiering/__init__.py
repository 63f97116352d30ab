"""The cold tier: archive old log segments to object storage, verified before trim, and
read them back through one continuous log (docs/tiering.md).

Importing :mod:`memstream.producers` never imports this package (boto3, zstandard).
"""

from __future__ import annotations

from typing import Any

from .archive import Archive, ObjectInfo, open_archive
from .cache import SegmentCache
from .errors import (
    ArchiveConfigError,
    ArchiveError,
    ArchiveUnavailableError,
    CorruptSegmentError,
    ObjectMissingError,
)
from .local import LocalArchive
from .manifest import Segment
from .policy import Policy, parse_duration
from .readthrough import AsyncColdLog, ColdLog
from .tier import PassSummary, Tierer


def __getattr__(name: str) -> Any:
    # S3Archive pulls in boto3: imported on first use, not with the package.
    if name == "S3Archive":
        from .s3 import S3Archive

        return S3Archive
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Archive",
    "ArchiveConfigError",
    "ArchiveError",
    "ArchiveUnavailableError",
    "AsyncColdLog",
    "ColdLog",
    "CorruptSegmentError",
    "LocalArchive",
    "ObjectInfo",
    "ObjectMissingError",
    "PassSummary",
    "Policy",
    "S3Archive",
    "Segment",
    "SegmentCache",
    "Tierer",
    "open_archive",
    "parse_duration",
]
