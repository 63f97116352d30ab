"""A private redis-server for the test suite, on a free loopback port.

A missing server fails the run: the suite never skips, because a skipped storage test
hides exactly the breakage it exists to catch.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process. ``kill``/``restart``/``freeze`` serve the chaos tests:
    a restart reuses the port, the directory and the options, so AOF files are reloaded."""

    def __init__(self, workdir: Path, *extra: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server not found on PATH: run `make setup` (installs Debian's "
                "redis-server) or install Redis >= 7.0"
            )
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = workdir
        self.extra = extra
        workdir.mkdir(parents=True, exist_ok=True)
        self.argv = [
            binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(workdir),
            "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--logfile", str(workdir / "redis.log"), *extra,
        ]  # fmt: skip
        self.start()
        client = self._client()
        version = client.info("server")["redis_version"]
        client.close()
        if int(str(version).split(".")[0]) < 7:
            self.stop()
            raise RuntimeError(f"redis-server {version} is too old: memstream needs >= 7.0")

    def _client(self) -> redis.Redis:
        extra = self.extra
        password = extra[extra.index("--requirepass") + 1] if "--requirepass" in extra else None
        return redis.Redis(port=self.port, password=password)

    def start(self) -> None:
        """Start (again, after :meth:`stop`) on the same port with the same arguments."""
        self.proc = self._launch()

    def _launch(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        client = self._client()
        deadline = time.monotonic() + 30
        try:
            while True:
                try:
                    client.ping()
                    return proc
                except (redis.ConnectionError, redis.BusyLoadingError) as e:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"redis-server did not start; see {self.workdir}/redis.log"
                        ) from e
                    time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no save; what the AOF holds is what survives."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def restart(self) -> None:
        """Start again on the same port and directory (after :meth:`kill` or a SHUTDOWN)."""
        if self.proc.poll() is None:
            self.kill()
        self.proc = self._launch()

    def freeze(self) -> None:
        """SIGSTOP: the process stays, connections stay open, nothing answers."""
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        self.thaw()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
