"""moto's S3 server as a real HTTP endpoint on a free loopback port, for the suite.

It runs as its own process, so a test can stop it (the "S3 unavailable" fault) and the
tier processes a test spawns reach it over HTTP exactly as they would reach MinIO.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.redis_server import free_port

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class S3Server:
    def __init__(self, env: dict[str, str] | None = None) -> None:
        binary = shutil.which("moto_server") or os.path.join(
            os.path.dirname(os.path.realpath(__import__("sys").executable)), "moto_server"
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [binary, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(self.url + "/moto-api/", timeout=1).close()
                return
            except OSError as e:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from e
                time.sleep(0.1)

    def client(self) -> Any:
        import boto3

        c = _creds()
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=c["aws_access_key_id"],
            aws_secret_access_key=c["aws_secret_access_key"],
            region_name=c["region_name"],
        )

    def new_bucket(self) -> str:
        name = f"ms-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _creds() -> dict[str, str]:
    return {
        "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "region_name": CREDENTIALS["AWS_DEFAULT_REGION"],
    }


@contextmanager
def aws_env() -> Iterator[None]:
    """Set the fake credentials for boto3's chain in this process, then restore."""
    saved = {k: os.environ.get(k) for k in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# Fixtures, imported by the test modules that need them (conftest.py is shared with other
# work, so they live here).


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    server = S3Server()
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3_server: S3Server) -> Iterator[S3Server]:
    """Credentials for boto3's chain in this process, and the server."""
    with aws_env():
        yield s3_server


class FaultProxy:
    """A loopback TCP proxy in front of the S3 server that can misbehave on purpose.

    Modes: ``pass``; ``drop`` (close every connection at once: S3 unavailable);
    ``delay`` (hold each reply ``delay_s``: S3 slow); ``cut`` (forward the first
    ``cut_bytes`` of a request, then close: an upload failing midway), for the next
    ``cut_left`` connections, then ``pass``. Changing mode closes open connections, so
    boto3's pooled ones cannot slip past."""

    def __init__(self, upstream_port: int) -> None:
        import socket
        import threading

        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.mode = "pass"
        self.delay_s = 0.0
        self.cut_bytes = 300
        self.cut_left = 0
        self.cuts = 0
        self._open: list[Any] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def set(self, mode: str, **options: Any) -> None:
        with self._lock:
            self.mode = mode
            for name, value in options.items():
                setattr(self, name, value)
            for s in self._open:
                with contextlib.suppress(OSError):
                    s.close()
            self._open.clear()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                mode = self.mode
                if mode == "cut":
                    if self.cut_left <= 0:
                        mode = "pass"
                    else:
                        self.cut_left -= 1
                if mode == "drop":
                    client.close()
                    continue
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
                self._open += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, mode, True),
                             daemon=True).start()  # fmt: skip
            threading.Thread(target=self._pump, args=(upstream, client, mode, False),
                             daemon=True).start()  # fmt: skip

    def _pump(self, src: Any, dst: Any, mode: str, up: bool) -> None:
        sent = 0
        try:
            while chunk := src.recv(65536):
                if mode == "cut" and up:
                    room = self.cut_bytes - sent
                    if len(chunk) >= room:
                        dst.sendall(chunk[:room])
                        self.cuts += 1
                        break
                if mode == "delay" and not up:
                    time.sleep(self.delay_s)
                dst.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()

    def close(self) -> None:
        self.listener.close()
        self.set("drop")
