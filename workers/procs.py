"""Stopping worker processes the way an operator would: SIGTERM, wait, then kill."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Sequence


def stop_all(procs: Sequence[subprocess.Popen[bytes]], timeout: float) -> None:
    """SIGTERM every live process, then wait up to ``timeout`` s for each: a worker
    finishes the batch in hand first. One that does not exit in time is killed (its
    pending entries are reclaimed by the others, nothing is lost)."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
