"""Errors of the cold tier, under the project's one root (:class:`MemstreamError`)."""

from __future__ import annotations

from memstream.producers.errors import ConfigError, MemstreamError


class ArchiveError(MemstreamError):
    """The archive (directory or bucket) failed an operation; ``name`` is the object."""

    def __init__(self, message: str, name: str | None = None) -> None:
        self.name = name
        super().__init__(message)


class ArchiveUnavailableError(ArchiveError):
    """The archive could not be reached or answered with an error; retrying may help."""


class ObjectMissingError(ArchiveError):
    """An object the manifest names is not in the archive."""


class CorruptSegmentError(ArchiveError):
    """An object's bytes fail their recorded size or sha256, or do not decode. Readers
    raise this instead of skipping the segment: a silent gap would look like history."""


class ArchiveConfigError(ConfigError):
    """``archive_url`` (``MEMSTREAM_ARCHIVE_URL``) or the S3 settings are unusable: a bad
    scheme, a missing bucket, credentials the store refuses."""
