"""Run workers inside a test: in-process (asyncio task) or as real processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import redis

from memstream.producers import Settings
from memstream.workers.options import WorkerOptions
from memstream.workers.worker import Worker


@asynccontextmanager
async def running_worker(
    url: str, name: str = "w1", settings: dict[str, object] | None = None, **options: int | float
) -> AsyncIterator[Worker]:
    """An in-process worker; ``settings`` overrides Settings fields (caps, TTLs)."""
    config = Settings.from_url(url, **(settings or {}))
    opts: dict[str, float] = {"block_ms": 100, "meta_every_s": 0.1, **options}
    worker = Worker.from_settings(config, WorkerOptions(consumer=name, **opts))
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.request_stop()
        await task
        await worker.client.aclose()


def spawn_worker(
    url: str, name: str, *extra: str, log: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """A ``memstream worker`` process; its stderr goes to ``log`` when given."""
    out: Any = subprocess.DEVNULL
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        out = log.open("ab")  # the child keeps its own descriptor; ours closes below
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "memstream.workers.cli", "worker", "--redis-url", url,
             "--consumer", name, "--block-ms", "200", *extra],
            stdout=subprocess.DEVNULL,
            stderr=out,
            env=None if env is None else {**os.environ, **env},
        )  # fmt: skip
    finally:
        if log is not None:
            out.close()


PROBLEMS = ("Task exception was never retrieved", "Traceback")


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``check`` until true; return the seconds it took, fail naming ``what``."""
    start = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - start
        except redis.RedisError:
            pass  # Redis is still coming back: keep polling
        assert time.monotonic() - start < timeout, f"timed out waiting for {what}"
        time.sleep(0.05)


def warnings_in(text: str) -> list[str]:
    return [line for line in text.splitlines() if " WARNING " in line]


def stop_worker(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """SIGTERM, then the exit status (the worker finishes its batch in flight first)."""
    proc.terminate()
    return proc.wait(timeout=timeout)
