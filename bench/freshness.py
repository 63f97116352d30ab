"""Freshness under load: append at a steady pace, time sampled events until visible.

    .venv/bin/python bench/freshness.py [--rates 1000,5000] [--seconds 5] [--producers N]
                                        [--batch N] [--modes event,poll] [--trace]
                                        [--json PATH]

One private redis-server and one ``memstream worker`` (``--block-ms 1000 --batch 200``).
The load (:mod:`bench.fresh_load`): for each rate, ``P`` producer processes (default one
per 1,000 events/s, or per ``batch`` x 1,000/s) share one schedule, event ``i`` due at
``start + i / rate``; ``--batch N`` sends ``N`` events per ``append_many`` call. Every
:data:`SAMPLE_EVERY`-th event is followed by ``AsyncReader.wait(receipt)``; its
freshness is the time from the start of the append to the return of ``wait``. The
achieved rate is the events sent over the time from the schedule's start to the last
append's return: a run that falls behind its schedule says so. This module is the
report: the worker, the trace's breakdown, the table and the targets.

``--modes event,poll`` measures each rate twice in the same run: ``event`` is
``AsyncReader.wait`` (wakes on the change record), ``poll`` is the same wait with no
subscriber (:func:`memstream.projections.waiter.wait_for` with ``waiter=None``), the
poll schedule ``wait`` had before. ``--trace`` runs the worker through
:mod:`bench.fresh_worker` and breaks each sample down: append ack, XREADGROUP return,
start of the batch's preparation, ``ms_apply`` sent and returned, record received,
``wait`` returned (every clock is the host's monotonic clock).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    BenchRedis,
    Report,
    Target,
    environment,
    note,
    percentile,
    run_and_report,
)
from bench.fresh_load import PER_PRODUCER, SAMPLE_EVERY, SENDERS, owner, paced, run_rate

__all__ = ["SAMPLE_EVERY", "SENDERS", "main", "owner", "paced", "run_rate"]
"""``bench/workers.py`` imports the load side from here."""

TARGETS_MS = {1000: 10.0, 5000: 20.0}
"""Issue 16: freshness p99 at most 10 ms at 1,000/s and 20 ms at 5,000/s."""

# --- the trace ---------------------------------------------------------------------------

STAGES = (
    ("append", "append sent -> acked"),
    ("to_read", "acked -> XREADGROUP returned"),
    ("to_prepare", "read -> batch preparation starts"),
    ("prepare", "preparation (fetch, plan, previous apply) -> ms_apply sent"),
    ("apply", "ms_apply sent -> returned"),
    ("to_record", "ms_apply returned -> record received"),
    ("to_return", "record received -> wait returned"),
)


def breakdown(found: dict[str, Any], trace: dict[str, Any]) -> dict[str, Any]:
    """Each sample's time split into :data:`STAGES` (seconds), joined on feed ids; the
    p50 and p99 of each stage, and the mean of each over the slowest 1% of samples."""
    read_at: dict[str, float] = {}
    for t, ids in trace["reads"]:
        for fid in ids:
            read_at.setdefault(fid, t)
    applied: dict[str, tuple[float, float, float]] = {}
    for started, sent, done, ids in trace["applies"]:
        for fid in ids:
            applied.setdefault(fid, (started, sent, done))
    arrived = {(o, lid): t for o, lid, t in found["arrivals"]}
    rows = []
    for fid, who, lid, sent, acked, done in found["raw_samples"]:
        if fid not in read_at or fid not in applied or (who, lid) not in arrived:
            continue
        prep, call, back = applied[fid]
        note_t = arrived[(who, lid)]
        marks = (sent, acked, read_at[fid], prep, call, back, note_t, done)
        rows.append((done - sent, [b - a for a, b in itertools.pairwise(marks)]))
    if not rows:
        return {"joined": 0}
    rows.sort()
    tail = rows[-max(1, len(rows) // 100) :]
    out: dict[str, Any] = {"joined": len(rows)}
    for n, (name, _) in enumerate(STAGES):
        values = [r[1][n] for r in rows]
        out[name] = {
            "p50_ms": percentile(values, 50) * 1e3,
            "p99_ms": percentile(values, 99) * 1e3,
            "tail_mean_ms": sum(r[1][n] for r in tail) / len(tail) * 1e3,
        }
    window = (min(r[3] for r in found["raw_samples"]), max(r[5] for r in found["raw_samples"]))
    pauses = [d for t, d in trace["gc"] if window[0] <= t <= window[1]]
    out["worker_gc"] = {"count": len(pauses), "max_ms": max(pauses, default=0.0) * 1e3}
    reads = [len(ids) for t, ids in trace["reads"] if window[0] <= t <= window[1]]
    batches = [len(ids) for _, s, _, ids in trace["applies"] if window[0] <= s <= window[1]]
    out["reads"] = {"count": len(reads), "mean_entries": sum(reads) / max(len(reads), 1)}
    out["applies"] = {"count": len(batches), "mean_entries": sum(batches) / max(len(batches), 1)}
    return out


# --- the run -----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="1000,5000", help="events per second, comma-separated")
    ap.add_argument("--seconds", type=float, default=5.0, help="seconds per rate")
    ap.add_argument("--owners", type=int, default=50, help="owners (one session each)")
    ap.add_argument("--producers", type=int, default=0,
                    help=f"producer processes (0: one per {PER_PRODUCER:,}/s)")  # fmt: skip
    ap.add_argument("--workers", type=int, default=1, help="worker processes")
    ap.add_argument("--batch", type=int, default=1,
                    help="events per append_many call (1: single appends)")  # fmt: skip
    ap.add_argument("--modes", default="event", help="event, poll or both (event,poll)")
    ap.add_argument("--trace", action="store_true", help="break each sample down")
    ap.add_argument("--json", type=Path, default=None, help="write every figure as JSON")
    return ap.parse_args(argv)


class TracedWorker:
    """One ``memstream worker`` (through :mod:`bench.fresh_worker` when tracing)."""

    def __init__(self, url: str, logdir: Path, trace: bool, tag: str) -> None:
        self.trace = logdir / f"trace-{tag}.json" if trace else None
        self.log = logdir / f"worker-{tag}.log"
        args = ["worker", "--redis-url", url, "--consumer", f"fresh-{tag}",
                "--block-ms", "1000", "--batch", "200"]  # fmt: skip
        head = (
            [sys.executable, "-m", "bench.fresh_worker", str(self.trace)]
            if self.trace
            else [sys.executable, "-m", "memstream.workers.cli"]
        )
        root = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
        with self.log.open("wb") as fh:
            self.proc = subprocess.Popen(
                head + args, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=root
            )

    def stop(self) -> dict[str, Any] | None:
        from memstream.workers.procs import stop_all

        stop_all([self.proc], timeout=20)
        if self.trace is None:
            return None
        if not self.trace.exists():
            raise RuntimeError("worker wrote no trace:\n" + self.log.read_text()[-2000:])
        found: dict[str, Any] = json.loads(self.trace.read_text())
        return found


def run(args: argparse.Namespace) -> tuple[Report, list[Target]]:
    from memstream.workers.deploy import init

    rates = [int(x) for x in args.rates.split(",")]
    modes = [m.strip() for m in args.modes.split(",")]
    results: list[dict[str, Any]] = []
    load = [os.getloadavg()[0]]
    with BenchRedis() as server, tempfile.TemporaryDirectory(prefix="ms-bench-f-") as tmp:
        client = server.client()
        init(client)
        note(f"redis-server {server.version} on port {server.port}; load {load[0]:.1f}")
        for rate in rates:
            for mode in modes:
                # Fresh workers per phase: their traces cover that phase only.
                workers = [
                    TracedWorker(server.url, Path(tmp), args.trace, f"{mode}-{rate}-{w}")
                    for w in range(args.workers)
                ]
                pids = [w.proc.pid for w in workers]
                try:
                    found = run_rate(
                        server.url, rate, args.seconds, args.owners, producers=args.producers,
                        mode=mode, trace=args.trace, watch_pids=(*pids, server.proc.pid),
                        stats=client, batch=args.batch,
                    )  # fmt: skip
                finally:
                    trace = merged([w.stop() for w in workers])
                calls = _calls(client)
                found["looks_per_wait"] = calls.get("xinfo|groups", 0.0) / max(found["samples"], 1)
                found["calls_per_event"] = {k: v / found["events"] for k, v in calls.items()}
                used = list(found["cpu"].values())
                found["cpu"] = {"worker": sum(used[:-1]), "redis": used[-1]}
                found["workers"] = float(args.workers)
                if trace is not None:
                    found["breakdown"] = breakdown(found, trace)
                del found["raw_samples"], found["arrivals"]
                results.append(found)
                load.append(os.getloadavg()[0])
                note(
                    f"{mode} {rate:,}/s: achieved {found['rate_achieved']:,.0f}/s "
                    f"({found['producers']:.0f} producers), p50 {found['p50_s'] * 1e3:.1f} ms, "
                    f"p99 {found['p99_s'] * 1e3:.1f} ms; load {load[-1]:.1f}"
                )
        version = server.version
        client.close()
    return build_report(args, version, results, load)


def merged(traces: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """The workers' traces as one (their clocks are the same host clock); None untraced."""
    found = [t for t in traces if t is not None]
    if not found:
        return None
    return {k: [row for t in found for row in t[k]] for k in ("reads", "applies", "gc")}


def _calls(client: Any) -> dict[str, float]:
    """Calls of each command since the last ``CONFIG RESETSTAT`` (``xinfo|groups``: one
    per look of a ``wait``; nothing else in the run sends it)."""
    stats: Any = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): float(row["calls"])
        for name, row in stats.items()
        if isinstance(row, dict) and "calls" in row
    }


def build_report(
    args: argparse.Namespace, version: str, results: list[dict[str, Any]], load: list[float]
) -> tuple[Report, list[Target]]:
    rep = Report(
        "memstream freshness under load (append -> wait returned)",
        ("asked", "wait", "achieved", "procs x batch", "p50 ms", "p99 ms", "max ms", "late",
         "CPU w/r/p", "looks/wait"),
    )  # fmt: skip
    targets: list[Target] = []
    for f in results:
        rate = int(f["rate_target"])
        rep.row(
            f"{rate:,}/s", f["mode"], f"{f['rate_achieved']:,.0f}/s",
            f"{f['producers']:.0f}x{f['batch']:.0f}",
            f"{f['p50_s'] * 1e3:.1f}", f"{f['p99_s'] * 1e3:.1f}", f"{f['max_s'] * 1e3:.0f}",
            f"{f['late_sends']:.0f}",
            f"{f['cpu']['worker']:.2f}/{f['cpu']['redis']:.2f}/{f['producer_cpu']:.2f}",
            f"{f['looks_per_wait']:.1f}",
        )  # fmt: skip
        if f["mode"] == "event" and rate in TARGETS_MS:
            targets.append(Target(f"p99 at {rate:,}/s (ms)", f["p99_s"] * 1e3,
                                  TARGETS_MS[rate], False))  # fmt: skip
            targets.append(Target(f"achieved / asked at {rate:,}/s",
                                  f["rate_achieved"] / rate, 0.97, True))  # fmt: skip
        if "breakdown" in f and f["breakdown"].get("joined"):
            b = f["breakdown"]
            parts = ", ".join(
                f"{name} {b[name]['p50_ms']:.2f}/{b[name]['p99_ms']:.2f}/"
                f"{b[name]['tail_mean_ms']:.2f}"
                for name, _ in STAGES
            )
            rep.notes.append(
                f"{f['mode']} {rate:,}/s stages p50/p99/slowest-1% mean (ms): {parts}; "
                f"{b['reads']['count']} reads of {b['reads']['mean_entries']:.1f} entries, "
                f"{b['applies']['count']} applies of {b['applies']['mean_entries']:.1f}; "
                f"worker GC {b['worker_gc']['count']} runs, max {b['worker_gc']['max_ms']:.2f} ms"
            )
    rep.notes.append(
        f"{args.seconds:g} s per rate, every {SAMPLE_EVERY}th append waited for, "
        f"{SENDERS} sender threads per producer process (procs), {args.owners} owners; "
        f"{args.workers} worker(s); late = sends that started after their due time; CPU = cores "
        "used by the worker(s) / redis-server / all producer processes; looks/wait = XINFO GROUPS "
        "calls per sampled wait; "
        f"load average {', '.join(f'{x:.1f}' for x in load)} (shared 2-core machine)."
    )
    rep.data = {
        "environment": environment(version),
        "parameters": vars(args) | {"json": str(args.json) if args.json else None},
        "results": results,
        "load": load,
    }
    return rep, targets


def main(argv: Sequence[str] | None = None) -> int:
    return run_and_report(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
