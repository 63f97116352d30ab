"""Helpers shared by every benchmark: a private redis-server, percentiles, progress,
ratios and JSON results.

Benchmarks never touch a Redis someone else uses: each starts its own server on a free
loopback port with persistence off, and measures its baseline against the same server in
the same run, because on a small shared machine only ratios are worth comparing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
from redis.utils import HIREDIS_AVAILABLE
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

err = Console(stderr=True)
"""Progress and notes go to stderr, so stdout holds only the results."""

out = Console()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BenchRedis:
    """A private redis-server (no RDB, no AOF) in a temporary folder, on a free port."""

    def __init__(self, *extra: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server not found on PATH: run `make setup` or install Redis >= 7.0"
            )
        self._tmp = tempfile.TemporaryDirectory(prefix="memstream-bench-")
        workdir = Path(self._tmp.name)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        argv = [
            binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(workdir), "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--logfile", str(workdir / "redis.log"), *extra,
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        log = (workdir / "redis.log").read_text(errors="replace")[-2000:]
                        self.stop()
                        raise RuntimeError(f"redis-server did not start:\n{log}") from None
                    time.sleep(0.02)
            info: Any = client.info("server")
            self.version = str(info["redis_version"])
        finally:
            client.close()
        if int(self.version.split(".")[0]) < 7:
            self.stop()
            raise RuntimeError(f"redis-server {self.version} is too old: memstream needs >= 7.0")

    def client(self) -> redis.Redis:
        """A plain RESP2 bytes client, the same reply shape the producer uses."""
        return redis.Redis(port=self.port, protocol=2, decode_responses=False)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._tmp.cleanup()

    def __enter__(self) -> BenchRedis:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


PIN_MODES = ("none", "same", "split")


def pin(server_pid: int, mode: str) -> str:
    """Pin this process and the server: ``same`` CPU, ``split`` over two CPUs, or ``none``.

    On a small VM a loopback round trip costs about twice as much when the client and the
    server sit on different CPUs (a cross-CPU wake-up) as when they share one, and the
    scheduler switches between the two from run to run; pinning makes latency repeatable.
    """
    if mode == "none":
        return "not pinned"
    cpus = sorted(os.sched_getaffinity(0))
    if mode == "split" and len(cpus) < 2:
        raise RuntimeError("--pin split needs at least 2 CPUs")
    server_cpu = cpus[0]
    client_cpu = cpus[0] if mode == "same" else cpus[1]
    os.sched_setaffinity(server_pid, {server_cpu})
    os.sched_setaffinity(0, {client_cpu})
    return f"server on CPU {server_cpu}, client on CPU {client_cpu}"


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), linearly interpolated between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


@dataclass(frozen=True, slots=True)
class Target:
    """A ratio with the bound it must meet: ``at_least`` (>=) or at most (<=)."""

    name: str
    value: float
    bound: float
    at_least: bool

    @property
    def met(self) -> bool:
        return self.value >= self.bound if self.at_least else self.value <= self.bound

    @property
    def verdict(self) -> str:
        return "PASS" if self.met else "MISS"

    @property
    def rule(self) -> str:
        return f"{'>=' if self.at_least else '<='} {self.bound:g}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "bound": self.bound,
            "rule": self.rule,
            "verdict": self.verdict,
        }


@contextmanager
def progress() -> Iterator[Progress]:
    """A rich progress display on stderr (plain final lines when stderr is not a tty)."""
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )
    with bar:
        yield bar


def note(text: str) -> None:
    err.print(text, highlight=False)


@dataclass
class Report:
    """A results table (first column left, the rest right-aligned) plus the JSON record."""

    title: str
    columns: Sequence[str]
    rows: list[Sequence[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def row(self, *cells: str) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"row has {len(cells)} cells, table has {len(self.columns)}")
        self.rows.append(cells)

    def print(self, targets: Sequence[Target]) -> None:
        table = Table(title=self.title, title_justify="left")
        for i, name in enumerate(self.columns):
            table.add_column(name, justify="left" if i == 0 else "right", no_wrap=i == 0)
        for cells in self.rows:
            table.add_row(*cells)
        out.print(table)
        for line in self.notes:
            out.print(line, highlight=False)
        for t in targets:
            colour = "green" if t.met else "red"
            out.print(
                f"[{colour}]{t.verdict}[/{colour}]  {t.name} = {t.value:.3f}  (target {t.rule})",
                highlight=False,
            )

    def write_json(self, path: Path, targets: Sequence[Target]) -> None:
        doc = {
            "benchmark": self.title,
            **self.data,
            "targets": {t.name: t.as_dict() for t in targets},
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def environment(server_version: str) -> dict[str, Any]:
    """What the figures depend on: versions, CPU count, whether hiredis parses replies."""
    try:
        hiredis_version: str | None = version("hiredis")
    except PackageNotFoundError:
        hiredis_version = None
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "redis_server": server_version,
        "redis_py": redis.__version__,
        "hiredis": hiredis_version if HIREDIS_AVAILABLE else None,
    }


def fmt_rate(per_s: float) -> str:
    return f"{per_s:,.0f}/s"


def fmt_us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f} us"


def run_and_report(
    run: Callable[[argparse.Namespace], tuple[Report, list[Target]]], args: argparse.Namespace
) -> int:
    """Every benchmark's ``main``: run, print the table and verdicts, say how long it
    took, and write the JSON record when ``--json`` asks for it. Exit status 0: a MISS
    is printed, not raised."""
    started = time.perf_counter()
    report, targets = run(args)
    report.print(targets)
    note(f"took {time.perf_counter() - started:.1f} s")
    if args.json is not None:
        report.write_json(args.json, targets)
        note(f"results written to {args.json}")
    return 0
