"""A private redis-server for the test suite, on a free loopback port.

A missing server fails the run: the suite never skips, because a skipped storage test
hides exactly the breakage it exists to catch.
"""

from __future__ import annotations

import shutil
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
    def __init__(self, workdir: Path, *extra: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server not found on PATH: run `make setup` (installs Debian's "
                "redis-server) or install Redis >= 7.0"
            )
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        workdir.mkdir(parents=True, exist_ok=True)
        self.binary, self.workdir, self.extra = binary, workdir, extra
        self.start()

    def start(self) -> None:
        """Start (again, after :meth:`stop`) on the same port with the same arguments."""
        binary, workdir, extra = self.binary, self.workdir, self.extra
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(workdir),
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--logfile",
                str(workdir / "redis.log"),
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        password = extra[extra.index("--requirepass") + 1] if "--requirepass" in extra else None
        client = redis.Redis(port=self.port, password=password)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except (redis.ConnectionError, redis.BusyLoadingError) as e:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"redis-server did not start; see {workdir}/redis.log"
                    ) from e
                time.sleep(0.02)
        version = client.info("server")["redis_version"]
        client.close()
        if int(str(version).split(".")[0]) < 7:
            self.stop()
            raise RuntimeError(f"redis-server {version} is too old: memstream needs >= 7.0")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
