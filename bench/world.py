"""World-model benchmark: evidence applied per second by one worker, and predict latency.

    .venv/bin/python bench/world.py [--quick] [--n N] [--owners K] [--json PATH]

One private redis-server (no persistence) serves every phase:

1. **Apply.** ``K`` owners configure scenario ``office`` (3 levels, a binary and a
   4-outcome variable); ``N`` ``evidence.observed`` events over 3-level paths are appended
   with ``append_many``; one ``memstream worker`` process applies them (clock from the
   first delivery to every feed drained, as bench/workers.py). Same-run baselines: the
   same worker on ``N`` ``message.appended`` events, and a raw XREADGROUP + XACK no-op.
2. **Predict.** ``Reader.world_predict`` on 3-level paths (one pipelined round trip: the
   configuration and three node hashes, then shrinkage in Python), against the same four
   commands pipelined by bare redis-py: p50 and p99.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from bench.common import (
    BenchRedis,
    Report,
    Target,
    environment,
    fmt_rate,
    fmt_us,
    note,
    percentile,
    ratio,
    run_and_report,
)
from bench.workers import end_to_end, fill, raw_noop, reset
from memstream.producers import Append, Producer, keys
from memstream.producers.events import EvidenceObserved
from memstream.producers.world import CONF_FIELD, World, conf_key
from memstream.projections.reader import Reader
from memstream.projections.world import node_key

VARIABLES = {"occupied": ["yes", "no"], "mood": ["calm", "busy", "loud", "empty"]}
ROOMS, KINDS, SITES = [f"room{i}" for i in range(20)], ["meeting", "desk", "lab"], ["north"]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small run, well under a minute")
    ap.add_argument("--n", type=int, default=None, help="evidence events (default 20000)")
    ap.add_argument("--owners", type=int, default=50)
    ap.add_argument("--reads", type=int, default=None, help="predict calls (default 5000)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    args.n = args.n or (4000 if args.quick else 20_000)
    args.reads = args.reads or (1000 if args.quick else 5000)
    return args


def path(rng: random.Random) -> list[str]:
    return [rng.choice(ROOMS), rng.choice(KINDS), rng.choice(SITES)]


def fill_evidence(url: str, n: int, owners: int) -> float:
    """Configure every owner, then append ``n`` observations; returns the append rate."""
    rng = random.Random(1)
    with Producer.from_url(url) as producer:
        for k in range(owners):
            World(producer, f"bench-user-{k:03d}", "office").configure(VARIABLES, levels=3)
        items = []
        for i in range(n):
            variable = rng.choice(sorted(VARIABLES))
            event = EvidenceObserved(
                scenario="office", path=path(rng), variable=variable,
                outcome=rng.choice(VARIABLES[variable]), weight=rng.choice([1.0, 0.5, 1.75]),
            )  # fmt: skip
            items.append(Append(f"bench-user-{i % owners:03d}", event))
        t0 = time.perf_counter()
        for start in range(0, n, 1000):
            producer.append_many(items[start : start + 1000])
        return n / (time.perf_counter() - t0)


def predict_latency(url: str, client: redis.Redis, reads: int, owners: int) -> dict[str, float]:
    rng = random.Random(2)
    queries = [(f"bench-user-{rng.randrange(owners):03d}", path(rng)) for _ in range(reads)]
    ours, raw, state = [], [], []
    with Reader.from_url(url) as reader:
        for who, where in queries[:50]:  # warm: connections, deployment cache
            reader.world_predict(who, "office", where, "mood")
        for who, where in queries:
            t0 = time.perf_counter()
            reader.world_predict(who, "office", where, "mood")
            ours.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            reader.state(who)  # one HGET through the same Reader: its fixed cost
            state.append(time.perf_counter() - t0)
    for who, where in queries:
        pk = keys.Projection(keys.partition(who, 16), 1)
        root_first = list(reversed(where))
        t0 = time.perf_counter()
        pipe = client.pipeline(transaction=False)
        pipe.hget(conf_key(pk, who, "office"), CONF_FIELD)
        for d in range(3):
            pipe.hgetall(node_key(pk, who, "office", root_first[: d + 1]))
        pipe.execute()
        raw.append(time.perf_counter() - t0)
    return {
        "predict_p50_s": percentile(ours, 50),
        "predict_p99_s": percentile(ours, 99),
        "raw_p50_s": percentile(raw, 50),
        "raw_p99_s": percentile(raw, 99),
        "state_p50_s": percentile(state, 50),
        "state_p99_s": percentile(state, 99),
    }


def run(args: argparse.Namespace) -> tuple[Report, list[Target]]:
    with BenchRedis() as server, tempfile.TemporaryDirectory(prefix="ms-bench-world-") as tmp:
        client = server.client()
        reset(client)
        note(f"redis-server {server.version} on port {server.port}")
        append_rate = fill_evidence(server.url, args.n, args.owners)
        total = args.n + args.owners  # the configurations go through the feed too
        raw = raw_noop(client, 16)
        world, workers = end_to_end(client, server.url, 16, total, 1, Path(tmp))
        workers.stop()
        note(f"evidence: {fmt_rate(world['events_per_s'])} by one worker")
        latency = predict_latency(server.url, client, args.reads, args.owners)
        reset(client)
        fill(server.url, args.n, args.owners)
        messages, workers = end_to_end(client, server.url, 16, args.n, 1, Path(tmp))
        workers.stop()
    report = Report("world model", ["figure", "value", "baseline", "ratio"])
    ev, msg = world["events_per_s"], messages["events_per_s"]
    report.row("evidence applied, 1 worker", fmt_rate(ev), f"messages {fmt_rate(msg)}",
               f"{ratio(ev, msg):.2f}")  # fmt: skip
    report.row("raw XREADGROUP+XACK no-op", fmt_rate(raw), "", f"{ratio(ev, raw):.3f}")
    report.row("evidence append_many", fmt_rate(append_rate), "", "")
    for q in ("p50", "p99"):
        ours, base = latency[f"predict_{q}_s"], latency[f"raw_{q}_s"]
        report.row(f"world_predict {q}, 3 levels", fmt_us(ours), f"raw pipeline {fmt_us(base)}",
                   f"{ratio(ours, base):.2f}")  # fmt: skip
        state = latency[f"state_{q}_s"]
        report.row(f"  vs Reader.state {q}", "", fmt_us(state), f"{ratio(ours, state):.2f}")
    report.notes.append(f"{args.n:,} evidence events, {args.owners} owners, {args.reads} reads")
    report.data = {
        "env": environment(server.version), "apply": world, "messages": messages,
        "raw_noop_per_s": raw, "append_per_s": append_rate, "latency": latency,
    }  # fmt: skip
    return report, []


def main(argv: Sequence[str] | None = None) -> int:
    return run_and_report(run, parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
