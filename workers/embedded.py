"""``EmbeddedRedis``: a private ``redis-server`` for the demo and local experiments.

It keeps its data under ``<data_dir>/redis`` with the append-only file on, so a second
run finds the first run's memories. A lock file guards the directory: two servers on
one AOF would corrupt it. The server inherits the lock, so a server left behind by a
killed parent still holds it and the next start refuses instead of sharing the files.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from memstream.producers.errors import MemstreamError

START_TIMEOUT_S = 60.0
"""Loading a big AOF can take a while; the server answers LOADING until it is done."""

STOP_TIMEOUT_S = 30.0
MIN_MAJOR = 7  # Redis Functions
PORT_TRIES = 3


class EmbeddedRedisError(MemstreamError):
    """The private redis-server could not be started (or is already in use)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedRedis:
    """Context manager: start on enter (PING answered), SHUTDOWN and wait on exit."""

    def __init__(self, data_dir: Path = Path(".memstream")) -> None:
        self.dir = (data_dir / "redis").resolve()
        self.port = 0
        self.version = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock: IO[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.dir / "redis.log"

    def start(self) -> EmbeddedRedis:
        binary = shutil.which("redis-server")
        if binary is None:
            raise EmbeddedRedisError(
                "redis-server not found on PATH: run `make setup` (it installs Redis >= 7.0)"
            )
        self.dir.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        try:
            for attempt in range(PORT_TRIES):
                if self._launch(binary, last=attempt == PORT_TRIES - 1):
                    break
            self._check_version()
        except BaseException:
            self.stop()
            raise
        return self

    def _take_lock(self) -> None:
        lock = (self.dir / "lock").open("a+")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise EmbeddedRedisError(
                f"{self.dir} is in use by another process: a running `memstream demo`, or a "
                f"redis-server left behind (its pid is in {self.dir / 'redis.pid'})"
            ) from None
        self._lock = lock

    def _launch(self, binary: str, *, last: bool) -> bool:
        """Start the server on a fresh port; False if the port was taken meanwhile."""
        assert self._lock is not None
        self.port = free_port()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603 (the binary on PATH, our flags)
                [binary, "--port", str(self.port), "--bind", "127.0.0.1",
                 "--dir", str(self.dir), "--appendonly", "yes", "--save", "",
                 "--daemonize", "no", "--logfile", str(self.log_path),
                 "--pidfile", str(self.dir / "redis.pid")],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                pass_fds=(self._lock.fileno(),),
                # Its own session: a Ctrl-C in the terminal reaches only the parent, which
                # then stops the workers first and Redis last.
                start_new_session=True,
            )  # fmt: skip
        client = self._bare_client()
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while True:
                try:
                    client.ping()
                    return True
                except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError) as e:
                    if self.proc.poll() is not None:
                        if not last and "Address already in use" in self._log_tail():
                            return False
                        raise EmbeddedRedisError(
                            f"redis-server exited at start; see {self.log_path}:\n"
                            + self._log_tail()
                        ) from e
                    if time.monotonic() > deadline:
                        raise EmbeddedRedisError(
                            f"redis-server did not answer within {START_TIMEOUT_S:.0f}s; "
                            f"see {self.log_path}"
                        ) from e
                    time.sleep(0.02)
        finally:
            client.close()

    def _check_version(self) -> None:
        with self.client() as client:
            info: Any = client.info("server")
        self.version = str(info["redis_version"])
        if int(self.version.split(".")[0]) < MIN_MAJOR:
            raise EmbeddedRedisError(
                f"redis-server {self.version} is too old: memstream needs Redis >= 7.0 "
                "(run `make setup`, or install a newer Redis)"
            )

    def _log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def client(self) -> redis.Redis:
        """A plain client to the server (the caller closes it)."""
        return redis.Redis(port=self.port, socket_timeout=10)

    def _bare_client(self) -> redis.Redis:
        """No retries: while starting, a refused connection means "not yet", and after
        SHUTDOWN it means "done"; redis-py's default retry would only add seconds."""
        return redis.Redis(
            port=self.port, socket_connect_timeout=1, socket_timeout=5, retry=Retry(NoBackoff(), 0)
        )

    def stop(self) -> None:
        """SHUTDOWN (the AOF is flushed and fsynced), then wait; idempotent."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(redis.RedisError), self._bare_client() as client:
                client.shutdown()
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
