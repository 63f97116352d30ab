"""A local directory as the archive: the embedded default (``make demo``)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .archive import Archive, ObjectInfo, check_name
from .errors import ArchiveConfigError, ArchiveUnavailableError, ObjectMissingError


class LocalArchive(Archive):
    """Objects are files under ``root``; a put writes a temporary file, fsyncs it and
    renames it into place, so a crash leaves the old object or the new one, never half."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()
        self.url = self.root.as_uri()

    def _path(self, name: str) -> Path:
        return self.root / check_name(name)

    def put(self, name: str, data: bytes) -> None:
        path = self._path(name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as e:
            raise ArchiveUnavailableError(
                f"cannot write {name} under {self.root}: {e}", name
            ) from e

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        try:
            with self._path(name).open("rb") as f:
                f.seek(offset)
                return f.read() if length is None else f.read(length)
        except FileNotFoundError as e:
            raise ObjectMissingError(f"object {name} is missing from {self.url}", name) from e
        except OSError as e:
            raise ArchiveUnavailableError(f"cannot read {name} under {self.root}: {e}", name) from e

    def head(self, name: str) -> ObjectInfo | None:
        try:
            return ObjectInfo(name, self._path(name).stat().st_size)
        except FileNotFoundError:
            return None

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        # Walk only the deepest folder the prefix names fully, then filter by the rest.
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self.root / folder if folder else self.root
        if not base.is_dir():
            return
        found = []
        for dirpath, _dirs, files in os.walk(base):
            for file in files:
                if file.startswith(".tmp-"):
                    continue
                full = Path(dirpath) / file
                name = full.relative_to(self.root).as_posix()
                if name.startswith(prefix):
                    found.append(ObjectInfo(name, full.stat().st_size))
        yield from sorted(found, key=lambda o: o.name)

    def delete(self, name: str) -> None:
        path = self._path(name)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        # Empty folders would still name the owner: remove them up to the root.
        parent = path.parent
        while parent != self.root and parent.is_relative_to(self.root):
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ArchiveConfigError(
                f"archive_url {self.url}: cannot create the folder: {e}"
            ) from e
        if not os.access(self.root, os.W_OK):
            raise ArchiveConfigError(f"archive_url {self.url}: the folder is not writable")
