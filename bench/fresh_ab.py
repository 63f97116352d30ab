"""Another revision's worker against this tree's, alternating, in one run.

    .venv/bin/python bench/fresh_ab.py [--base REV] [--rounds R] [--rates 1000,5000]
                                       [--seconds S] [--n N] [--json PATH]

On a shared 2-core machine the load of the neighbours moves every figure between runs,
so a before/after comparison is only honest inside one run, interleaved. ``REV``'s
``producers/ projections/ workers/`` (default ``HEAD``) are exported to a temporary
``memstream`` namespace, which the base worker imports first (``PYTHONPATH``); the
tree's worker imports the working tree. One private redis-server; each round runs, for
base then tree, on fresh data (``FLUSHALL`` + ``init``):

* **throughput**: 1 warm worker end to end over ``N`` events, against the raw no-op loop
  measured in the same round (:func:`bench.worker_runs.end_to_end`, :func:`raw_noop`);
* **freshness**: 1 worker, single appends paced at each rate (:func:`bench.fresh_load.run_rate`),
  p50 / p99 of append start -> ``AsyncReader.wait`` returned.

The load side (producers, readers) is always this tree's. Medians over the rounds, and
every round, with the load average. The exit status is 0; nothing is judged here
(``bench/workers.py`` and ``bench/freshness.py`` hold the targets).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import BenchRedis, median, note
from bench.fresh_load import run_rate
from bench.worker_runs import end_to_end, fill, raw_noop, reset

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("producers", "projections", "workers", "tiering", "integrations")
SETTLE_S = 2.5
"""A fresh worker's start-up (imports, first reads) before a paced phase begins."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="HEAD", help="git revision of the base worker")
    ap.add_argument("--rounds", type=int, default=3, help="base/tree pairs")
    ap.add_argument("--rates", default="1000,5000", help="freshness rates ('' for none)")
    ap.add_argument("--seconds", type=float, default=5.0, help="seconds per rate")
    ap.add_argument("--n", type=int, default=20_000, help="events per throughput run (0: none)")
    ap.add_argument("--owners", type=int, default=50)
    ap.add_argument("--json", type=Path, default=None)
    return ap.parse_args(argv)


def export(rev: str, into: Path) -> dict[str, str]:
    """``rev``'s packages as a ``memstream`` namespace under ``into``; the env to use it."""
    target = into / "memstream"
    target.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, *PACKAGES],
                             check=True, capture_output=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return {"PYTHONPATH": str(into)}


def freshness(url: str, rate: int, args: argparse.Namespace, env: dict[str, str],
              log: Path, pid: int) -> dict[str, float]:  # fmt: skip
    argv = [sys.executable, "-m", "memstream.workers.cli", "worker", "--redis-url", url,
            "--consumer", "ab", "--block-ms", "1000", "--batch", "200"]  # fmt: skip
    with log.open("ab") as fh:
        worker = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT,
                                  env={**os.environ, **env}, cwd="/")  # fmt: skip
    try:
        time.sleep(SETTLE_S)
        found = run_rate(url, rate, args.seconds, args.owners, watch_pids=(worker.pid, pid))
    finally:
        from memstream.workers.procs import stop_all

        stop_all([worker], timeout=20)
    cpu = list(found["cpu"].values())
    return {"achieved": found["rate_achieved"], "p50_ms": found["p50_s"] * 1e3,
            "p99_ms": found["p99_s"] * 1e3, "worker_cores": cpu[0], "redis_cores": cpu[1],
            "load": os.getloadavg()[0]}  # fmt: skip


def run(args: argparse.Namespace) -> dict[str, Any]:
    rates = [int(x) for x in args.rates.split(",") if x]
    out: dict[str, Any] = {"base": args.base, "rounds": []}
    with BenchRedis() as server, tempfile.TemporaryDirectory(prefix="ms-ab-") as tmp:
        envs = {"base": export(args.base, Path(tmp) / "base"), "tree": {}}
        client = server.client()
        for r in range(args.rounds):
            row: dict[str, Any] = {}
            for which, env in envs.items():
                got: dict[str, Any] = {}
                if args.n:
                    reset(client)
                    f, workers = end_to_end(
                        client, server.url, 16, args.n, 1, Path(tmp),
                        fill_with=lambda: fill(server.url, args.n, args.owners), env=env,
                    )  # fmt: skip
                    workers.stop()
                    reset(client)
                    fill(server.url, args.n, args.owners)
                    raw = raw_noop(client, 16)  # the same feeds, right after: same load
                    got["e2e"] = {"rate": f["events_per_s"], "raw": raw,
                                  "ratio": f["events_per_s"] / raw,
                                  "worker_us": f["worker_cpu_us_per_event"],
                                  "redis_us": f["redis_cpu_us_per_event"],
                                  "load": f["load_average_1m"]}  # fmt: skip
                    e = got["e2e"]
                    note(f"round {r} {which}: {e['rate']:,.0f}/s of raw {raw:,.0f}/s = "
                         f"{e['ratio']:.3f}; worker {e['worker_us']:.1f} µs, redis "
                         f"{e['redis_us']:.1f} µs per event; load {e['load']:.1f}")  # fmt: skip
                for rate in rates:
                    reset(client)
                    log = Path(tmp) / f"worker-{which}.log"
                    f = freshness(server.url, rate, args, env, log, server.proc.pid)
                    got[str(rate)] = f
                    note(f"round {r} {which} {rate:,}/s: achieved {f['achieved']:,.0f}/s, "
                         f"p50 {f['p50_ms']:.1f} ms, p99 {f['p99_ms']:.1f} ms; worker "
                         f"{f['worker_cores']:.2f} cores; load {f['load']:.1f}")  # fmt: skip
                row[which] = got
            out["rounds"].append(row)
        client.close()
    return out


def summary(out: dict[str, Any]) -> list[str]:
    lines = []
    rounds = out["rounds"]
    for key in [k for k in rounds[0]["base"] if k != "e2e"]:
        for q in ("p50_ms", "p99_ms", "worker_cores"):
            b = median([r["base"][key][q] for r in rounds])
            t = median([r["tree"][key][q] for r in rounds])
            lines.append(f"freshness {key}/s {q}: base {b:.2f}, tree {t:.2f} (median)")
    if "e2e" in rounds[0]["base"]:
        for q in ("ratio", "worker_us", "redis_us"):
            b = median([r["base"]["e2e"][q] for r in rounds])
            t = median([r["tree"]["e2e"][q] for r in rounds])
            lines.append(f"1 worker / raw no-op {q}: base {b:.3f}, tree {t:.3f} (median)")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = run(args)
    for line in summary(out):
        print(line)
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
