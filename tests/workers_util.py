"""Run workers inside a test: in-process (asyncio task) or as real processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

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
