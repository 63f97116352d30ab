"""The archive interface: five operations on named immutable objects.

Two implementations: :class:`~memstream.tiering.local.LocalArchive` (``file:///path``, the
embedded default) and :class:`~memstream.tiering.s3.S3Archive` (``s3://bucket/prefix``,
AWS or MinIO). :func:`open_archive` picks one from the ``archive_url`` setting. The
shared test suite (tests/test_archive_backends.py) runs against both.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from memstream.producers.settings import Settings

from .errors import ArchiveConfigError


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    name: str
    size: int


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_name(name: str) -> str:
    """Names come from :mod:`.names`; this guard keeps a bug from escaping the prefix."""
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"bad object name {name!r}")
    return name


class Archive(ABC):
    """Named immutable objects. Implementations are thread-safe for concurrent calls."""

    url: str

    @abstractmethod
    def put(self, name: str, data: bytes) -> None:
        """Store ``data`` under ``name`` (replacing it whole, never partly)."""

    @abstractmethod
    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """The object's bytes (``length`` bytes from ``offset`` when given); raise
        :class:`ObjectMissingError` when absent."""

    @abstractmethod
    def head(self, name: str) -> ObjectInfo | None:
        """The object's size, or None when it does not exist."""

    @abstractmethod
    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose name starts with ``prefix``, in name order."""

    @abstractmethod
    def delete(self, name: str) -> None:
        """Remove the object; removing a missing object is not an error."""

    def check(self) -> None:  # noqa: B027 (optional hook: most backends need no check)
        """Raise :class:`ArchiveConfigError` naming the setting when the archive cannot
        be used (missing bucket, refused credentials). Called once at start."""

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release connections (nothing for a directory)."""


def open_archive(settings: Settings, url: str | None = None) -> Archive:
    """The archive named by ``url`` or ``settings.archive_url``.

    ``file:///abs/path`` or a plain path -> a local directory; ``s3://bucket/prefix`` ->
    S3 (``settings.s3_endpoint_url`` points it at MinIO or moto).
    """
    target = url or settings.archive_url
    if not target:
        raise ArchiveConfigError(
            "archive_url is not set: set MEMSTREAM_ARCHIVE_URL to file:///path or "
            "s3://bucket/prefix"
        )
    parts = urlsplit(target)
    if parts.scheme in ("", "file"):
        from .local import LocalArchive

        path = unquote(parts.path) if parts.scheme == "file" else target
        if not path:
            raise ArchiveConfigError(f"archive_url {target!r}: a file:// URL needs a path")
        return LocalArchive(path)
    if parts.scheme == "s3":
        from .s3 import S3Archive

        if not parts.netloc:
            raise ArchiveConfigError(f"archive_url {target!r}: s3:// needs a bucket name")
        return S3Archive(parts.netloc, parts.path.strip("/"), settings.s3_endpoint_url)
    raise ArchiveConfigError(
        f"archive_url {target!r}: the scheme must be file:// or s3://, got {parts.scheme}://"
    )


_OPEN: dict[tuple[str, str | None], Archive] = {}


def cached_archive(settings: Settings) -> Archive | None:
    """The process's archive for ``settings.archive_url`` (opened once), or None when
    the setting is unset. Readers and replay use it; opening S3 makes no request."""
    if not settings.archive_url:
        return None
    key = (settings.archive_url, settings.s3_endpoint_url)
    found = _OPEN.get(key)
    if found is None:
        found = _OPEN[key] = open_archive(settings)
    return found
