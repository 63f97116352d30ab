"""``redis-benchmark`` figures, printed beside the append benchmark as context only."""

from __future__ import annotations

import re
import shutil
import subprocess

from bench.common import note

_RPS = re.compile(r"([\d.]+) requests per second")


def redis_benchmark(port: int, n: int) -> dict[str, float]:
    """Context only: what Redis's own C client gets from this server for XADD."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return {}
    blob = "x" * 200
    runs = {
        "xadd_50_clients": ["-c", "50"],
        "xadd_1_client_pipeline_1000": ["-c", "1", "-P", "1000"],
    }
    results: dict[str, float] = {}
    for name, extra in runs.items():
        cmd = [
            binary, "-p", str(port), "-n", str(n), "-q", *extra,
            "XADD", "bench:rb", "*", "type", "message.appended", "data", blob,
        ]  # fmt: skip
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
        except subprocess.TimeoutExpired:
            note(f"redis-benchmark {name} timed out; skipped")
            continue
        found = _RPS.findall(done.stdout.replace("\r", "\n"))
        if done.returncode != 0 or not found:
            note(f"redis-benchmark {name} gave no figure: {done.stderr.strip()[:200]}")
            continue
        results[name] = float(found[-1])
    return results
