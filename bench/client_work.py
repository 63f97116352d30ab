"""Client work per message event, split, with the cyclic garbage collector on and off.

    .venv/bin/python bench/client_work.py [--base REV] [--rounds R] [--batch N]

The same work as ``bench/append.py``'s "client work" figure, in one process and without
Redis: build each ``MessageAppended`` from the caller's values, ``prepare`` it (validate,
redact, encode) and ``plan_calls`` the batch. A batch keeps every event it builds until
it is sent, which is what ``append_many`` and the bench do, so Python's cyclic garbage
collector runs over a growing heap while the batch is made; this prints the figures with
the collector on (what callers pay) and off (the code alone), rounds interleaved, medians.

With ``--base REV``, that revision's ``producers`` package is loaded beside the tree's
(from ``git archive``, under another name) and every round times both, alternating, so a
change is compared with its base on the same machine in the same minute.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.util
import io
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OWNER = "bench-user-42"
SESSION = "sess-20261121-a"
_TEXT = (
    "I checked the deployment logs for the payment service and the retries line up with "
    "the connection pool running dry around the nightly batch window; raising the pool "
    "size to 64 and adding jitter to the backoff should stop the thundering herd. "
    "Next I will compare the p99 latency before and after the change on staging. "
)
PARTS = ("total", "build", "prepare", "plan")


def values(n: int) -> list[tuple[str, str, dict[str, Any]]]:
    """The caller's values of ``n`` chat turns, as ``bench/append.py`` makes them."""
    out = []
    for i in range(n):
        start = (i * 37) % (len(_TEXT) - 200)
        meta = {"model": "gpt-4o-mini", "tokens": 48 + i % 17, "latency_ms": 640 + i}
        role = "assistant" if i % 2 else "user"
        out.append((role, f"[{i:04d}] " + _TEXT[start : start + 193], meta))
    return out


def load(name: str, path: Path) -> ModuleType:
    """The package at ``path`` imported as ``name`` (its imports are relative)."""
    spec = importlib.util.spec_from_file_location(
        name, path / "__init__.py", submodule_search_locations=[str(path)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def side(name: str, path: Path, batch: int) -> Callable[[], tuple[float, ...]]:
    """One timed batch of the producers package at ``path``: µs per event of each part."""
    pkg = load(name, path)
    core = importlib.import_module(f"{name}.core")
    many = importlib.import_module(f"{name}.many")
    redactor = importlib.import_module(f"{name}.redact").Redactor()
    deployment = importlib.import_module(f"{name}.deployment").Deployment(
        partitions=16, version=1, max_event_bytes=1_048_576
    )
    planner = core.AppendCore(deployment, redactor)
    model, append, prepare = pkg.MessageAppended, pkg.Append, core.prepare
    given = values(64) * (batch // 64 + 1)
    given = given[:batch]

    def run() -> tuple[float, ...]:
        clock = time.perf_counter
        t0 = clock()
        built = [append(OWNER, model(role=r, content=c, meta=m), SESSION) for r, c, m in given]
        t1 = clock()
        prepared = [prepare(a, redactor, "msgpack") for a in built]
        t2 = clock()
        many.plan_calls(planner, prepared)
        t3 = clock()
        return tuple((b - a) / batch * 1e6 for a, b in ((t0, t3), (t0, t1), (t1, t2), (t2, t3)))

    return run


def base_tree(rev: str, into: Path) -> Path:
    """``producers/`` as of ``rev``, unpacked under ``into``."""
    raw = subprocess.check_output(["git", "-C", str(ROOT), "archive", rev, "producers"])
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        tar.extractall(into, filter="data")
    return into / "producers"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--base", default=None, help="git revision to compare with")
    parser.add_argument("--rounds", type=int, default=40, help="interleaved rounds")
    parser.add_argument("--batch", type=int, default=1000, help="events per batch")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.batch < 1:
        parser.error("--rounds and --batch must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        runs = {"tree": side("ms_tree", ROOT / "producers", args.batch)}
        if args.base:
            runs["base"] = side("ms_base", base_tree(args.base, Path(tmp)), args.batch)
        samples: dict[tuple[str, bool], list[tuple[float, ...]]] = {}
        for run in runs.values():
            for _ in range(3):
                run()  # warm-up: caches, memos, the first trigger checks
        names = list(runs)
        for r in range(args.rounds):
            for collector in (True, False) if r % 2 else (False, True):
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    gc.collect()
                    if not collector:
                        gc.disable()
                    try:
                        samples.setdefault((name, collector), []).append(runs[name]())
                    finally:
                        gc.enable()
    print(f"µs per message event, median of {args.rounds} rounds of {args.batch} events")
    print(f"{'side':6s} {'gc':4s} " + " ".join(f"{p:>8s}" for p in PARTS))
    for (name, collector), rows in sorted(samples.items()):
        medians = [statistics.median(row[k] for row in rows) for k in range(len(PARTS))]
        print(
            f"{name:6s} {'on' if collector else 'off':4s} " + " ".join(f"{m:8.2f}" for m in medians)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
