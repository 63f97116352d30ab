"""The producer's durable outbox: appends kept on local disk while Redis is out of reach.

One SQLite file (stdlib ``sqlite3``, WAL, ``synchronous=FULL``: a stored row survives a
power cut) holds each outboxed append with its ``eid`` and its ``ms_append`` arguments.
The flusher (:mod:`.outbox_flush`) sends them in ``seq`` order when Redis is back, reusing
each eid, so a flush that is interrupted and retried writes nothing twice.

Ordering rule: while an owner has pending rows, every new append of that owner is queued
behind them here too (:meth:`Outbox.store_if_pending`), instead of going straight to
Redis; otherwise a fresh append would overtake the outboxed ones and break the owner's
order. Other owners are not held up, except during an outage (:attr:`Outbox.outage`:
an append has just failed over, or the last flush failed): then every append is queued
at once instead of spending its own deadline on a Redis known to be away.

One process at a time: the outbox takes an exclusive ``flock`` on ``<path>.lock`` for its
lifetime (the kernel drops it when the process dies), so two flushers never race.
Sent rows are kept for :data:`DONE_KEEP_S` so ``Reader.wait`` can resolve their receipts;
rows Redis refused keep their reason.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from .errors import ConfigError

DONE_KEEP_S = 3600
"""How long a sent or refused row stays, for ``Reader.wait`` and ``outbox status``."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    owner   TEXT NOT NULL,
    eid     TEXT NOT NULL,
    args    BLOB NOT NULL,
    created REAL NOT NULL,
    state   TEXT NOT NULL DEFAULT 'pending',
    log_id  TEXT,
    feed_id TEXT,
    reason  TEXT,
    done    REAL
);
CREATE INDEX IF NOT EXISTS entries_state ON entries (state, seq);
CREATE INDEX IF NOT EXISTS entries_eid ON entries (eid);
"""


@dataclass(frozen=True, slots=True)
class Row:
    seq: int
    owner: str
    eid: str
    args: tuple[Any, ...]
    created: float


@dataclass(frozen=True, slots=True)
class OwnerStatus:
    owner: str
    pending: int
    oldest_age_s: float


@dataclass(frozen=True, slots=True)
class Resolution:
    """What became of one outboxed append: ``state`` is pending, sent or rejected."""

    state: str
    log_id: str | None = None
    feed_id: str | None = None
    reason: str | None = None


def _connect(path: str, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    else:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(SCHEMA)
    db.execute("PRAGMA busy_timeout=5000")
    return db


class Outbox:
    """The writer side, owned by one producer. Thread-safe: one lock guards the file and
    the set of owners with pending rows, which is what keeps the ordering rule atomic."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(Path(path))
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lockfile = _take_lock(self.path)
        try:
            self._db = _connect(self.path)
            rows = self._db.execute(
                "SELECT DISTINCT owner FROM entries WHERE state = 'pending'"
            ).fetchall()
        except sqlite3.Error as e:
            self._release_lock()
            raise ConfigError(f"outbox {self.path}: cannot open: {e}") from e
        self._lock = threading.Lock()
        self._pending_owners: set[str] = {owner for (owner,) in rows}
        self.wake = threading.Event()
        """Set when a row is stored, so the flusher need not poll."""
        if self._pending_owners:
            self.wake.set()

    outage = False
    """True from a failed append or flush until the next flush that succeeds."""

    def holds(self, owner: str) -> bool:
        """True while ``owner``'s new appends must be queued: it has rows waiting (they
        must not be overtaken), or Redis is known to be away."""
        return self.outage or owner in self._pending_owners

    @property
    def has_pending(self) -> bool:
        return bool(self._pending_owners)

    def store(self, owner: str, eid: str, args: tuple[Any, ...]) -> None:
        """Keep one append; it is on disk (fsynced) when this returns."""
        with self._lock:
            self._insert(owner, eid, args)

    def store_if_pending(self, owner: str, eid: str, args: tuple[Any, ...]) -> bool:
        """Queue the append if :meth:`holds` says so; False when it should be sent."""
        if not self.holds(owner):  # cheap check first: the common case
            return False
        with self._lock:
            if not self.holds(owner):
                return False
            self._insert(owner, eid, args)
            return True

    def _insert(self, owner: str, eid: str, args: tuple[Any, ...]) -> None:
        blob = msgpack.packb(list(args), use_bin_type=True)
        self._db.execute(
            "INSERT INTO entries (owner, eid, args, created) VALUES (?, ?, ?, ?)",
            (owner, eid, blob, time.time()),
        )
        self._pending_owners.add(owner)
        self.wake.set()

    def next_rows(self, limit: int) -> list[Row]:
        """The oldest pending rows, in the order they were stored."""
        with self._lock:
            found = self._db.execute(
                "SELECT seq, owner, eid, args, created FROM entries WHERE state = 'pending' "
                "ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            Row(seq, owner, eid, tuple(msgpack.unpackb(blob, raw=False)), created)
            for seq, owner, eid, blob, created in found
        ]

    def settle(self, sent: list[tuple[Row, str, str]], refused: list[tuple[Row, str]]) -> None:
        """Record what the flush did, in one transaction, and release owners that have
        nothing left (under the same lock as :meth:`store_if_pending`)."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for row, log_id, feed_id in sent:
                    self._db.execute(
                        "UPDATE entries SET state = 'sent', log_id = ?, feed_id = ?, done = ? "
                        "WHERE seq = ?",
                        (log_id, feed_id, now, row.seq),
                    )
                for row, reason in refused:
                    self._db.execute(
                        "UPDATE entries SET state = 'rejected', reason = ?, done = ? WHERE seq = ?",
                        (reason, now, row.seq),
                    )
                self._db.execute(
                    "DELETE FROM entries WHERE state != 'pending' AND done < ?",
                    (now - DONE_KEEP_S,),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            touched = {row.owner for row, *_ in sent} | {row.owner for row, _ in refused}
            for owner in touched:
                left = self._db.execute(
                    "SELECT 1 FROM entries WHERE owner = ? AND state = 'pending' LIMIT 1",
                    (owner,),
                ).fetchone()
                if left is None:
                    self._pending_owners.discard(owner)

    def close(self) -> None:
        with self._lock:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._release_lock()

    def _release_lock(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._lockfile)


def _take_lock(path: str) -> int:
    import fcntl

    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        raise ConfigError(
            f"outbox {path} is in use by another producer (one process per outbox file)"
        ) from e
    return fd


def status(path: str | os.PathLike[str]) -> list[OwnerStatus]:
    """Pending rows per owner and the age of each owner's oldest, read-only."""
    if not Path(path).exists():
        raise ConfigError(f"outbox {path}: no such file")
    db = _connect(str(path), readonly=True)
    try:
        rows = db.execute(
            "SELECT owner, COUNT(*), MIN(created) FROM entries WHERE state = 'pending' "
            "GROUP BY owner ORDER BY MIN(created)"
        ).fetchall()
    finally:
        db.close()
    now = time.time()
    return [OwnerStatus(owner, n, max(0.0, now - oldest)) for owner, n, oldest in rows]


def rejected_count(path: str | os.PathLike[str]) -> int:
    db = _connect(str(path), readonly=True)
    try:
        (n,) = db.execute("SELECT COUNT(*) FROM entries WHERE state = 'rejected'").fetchone()
    finally:
        db.close()
    return int(n)


def resolve(path: str | os.PathLike[str], eid: str) -> Resolution | None:
    """What became of the append with ``eid``, or None when the file does not know it."""
    with contextlib.suppress(sqlite3.Error):
        db = _connect(str(path), readonly=True)
        try:
            found = db.execute(
                "SELECT state, log_id, feed_id, reason FROM entries WHERE eid = ? "
                "ORDER BY seq DESC LIMIT 1",
                (eid,),
            ).fetchone()
        finally:
            db.close()
        return None if found is None else Resolution(*found)
    return None
