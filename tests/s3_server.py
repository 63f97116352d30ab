"""moto's S3 server as a real HTTP endpoint on a free loopback port, for the suite.

It runs as its own process, so a test can stop it (the "S3 unavailable" fault) and the
tier processes a test spawns reach it over HTTP exactly as they would reach MinIO.
"""

from __future__ import annotations

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
    def __init__(self) -> None:
        binary = shutil.which("moto_server") or os.path.join(
            os.path.dirname(os.path.realpath(__import__("sys").executable)), "moto_server"
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [binary, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
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
