"""Server time of the worker's functions, two versions of the Lua in one run.

    .venv/bin/python bench/worker_server.py [--base REV] [--rounds R]

One private redis-server; ``N`` ``message.appended`` events (as in ``bench/workers.py``)
are appended, and partition 3's first 2,000 feed entries are planned once, with this
tree's planner, into ``ms_fetch`` and ``ms_apply`` calls of 200 entries. Then, round by
round, the ``memstream_worker`` and ``memstream_fetch`` libraries of ``REV`` (default
``HEAD``) and of the working tree are loaded in turn and the same calls are sent; each
``ms_apply`` round acks through a group of its own, so every call applies all its entries.
Per event: redis-server's CPU (``INFO cpu``: time it ran, whatever the neighbours did) and
the calls' ``usec`` in ``INFO commandstats`` (wall time inside the call: on a loaded
machine it counts the time the server waited for a core). Median and minimum over the
rounds. What it does not show: the worker's own CPU (``bench/workers.py`` reports it).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgpack
import redis

from bench.common import BenchRedis, note
from bench.worker_runs import fill
from memstream.producers import keys
from memstream.producers.settings import Settings
from memstream.projections.base import ApplyContext
from memstream.projections.ops import apply_command
from memstream.projections.registry import default_projections
from memstream.workers.batch import _pairs, fetch_command
from memstream.workers.deploy import KEY_PLACEHOLDER, signing_key
from memstream.workers.deploy import init as deploy_init
from memstream.workers.plan import FeedEntry, Planner, Pointer, parse_pointer

ROOT = Path(__file__).resolve().parent.parent
LIBS = ("workers/lua/apply.lua", "workers/lua/fetch.lua")
P = 3
ENTRIES = 2000
BATCH = 200

Command = tuple[Any, ...]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="HEAD", help="git revision to compare the tree with")
    ap.add_argument("--rounds", type=int, default=12, help="rounds of each version")
    ap.add_argument("--n", type=int, default=20_000, help="events appended (50 owners)")
    ap.add_argument(
        "--session-ttl-s", type=int, default=None,
        help="plan with this session_ttl_s (adds the session index's expiry ops)",
    )  # fmt: skip
    return ap.parse_args(argv)


def sources(rev: str | None) -> list[str]:
    """The two libraries as in ``rev``, or as in the working tree (None)."""
    if rev is None:
        return [(ROOT / lib).read_text() for lib in LIBS]
    show = ["git", "-C", str(ROOT), "show"]
    return [subprocess.run([*show, f"{rev}:{lib}"], check=True, capture_output=True,
                           text=True).stdout for lib in LIBS]  # fmt: skip


def cpu_s(client: redis.Redis) -> float:
    info: Any = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def usec(client: redis.Redis, name: str) -> float:
    stats: Any = client.info("commandstats")
    return float(stats.get(f"cmdstat_{name}", {}).get("usec", 0))


def plan_calls(
    client: redis.Redis, settings: Settings, groups: list[str]
) -> tuple[list[Command], dict[str, list[Command]]]:
    """The ms_fetch calls and, per group, the ms_apply calls of partition P's entries."""
    feed = keys.feed(P)
    for g in groups:
        client.xgroup_create(feed, g, id="0")
    rows: Any = client.xrange(feed, count=ENTRIES)
    for g in groups:
        client.xreadgroup(g, "bench", {feed: ">"}, count=len(rows))
    planner = Planner(default_projections(), settings, 5)
    fetches: list[Command] = []
    applies: dict[str, list[Command]] = {g: [] for g in groups}
    for start in range(0, len(rows), BATCH):
        entries = [FeedEntry(i.decode(), f) for i, f in rows[start : start + BATCH]]
        pointers: dict[str, Pointer] = {e.feed_id: parse_pointer(P, 16, e.fields) for e in entries}
        fetch = fetch_command(P, list(pointers.values()))
        fetches.append(fetch)
        found: Any = client.execute_command(*fetch)  # type: ignore[no-untyped-call]
        logs = {fid: _pairs(row) for fid, row in zip(pointers, found, strict=True)}
        ctx = ApplyContext(keys.Projection(P, 1), settings, int(time.time() * 1000))
        out = planner.plan(ctx, "v1", entries, dict(pointers), logs)
        for g in groups:
            applies[g].append(apply_command(feed, g, out.entries, fences=keys.fences(P, 1),
                                            owners=out.owners))  # fmt: skip
    return fetches, applies


def run(args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    versions = {f"{args.base}": sources(args.base), "tree": sources(None)}
    figures: dict[str, dict[str, list[float]]] = {v: {} for v in versions}
    with BenchRedis() as server:
        client = server.client()
        deploy_init(client)
        secret = signing_key(client)
        fill(server.url, args.n, 50)
        groups = [f"bench-{i}" for i in range(args.rounds * len(versions))]
        settings = Settings.from_url(server.url, session_ttl_s=args.session_ttl_s)
        fetches, applies = plan_calls(client, settings, groups)
        events = sum(len(msgpack_entries(c)) for c in applies[groups[0]])
        note(f"{events} entries of partition {P} in {len(fetches)} calls; {args.rounds} rounds")
        send: Any = client.execute_command
        taken = iter(groups)
        for _ in range(args.rounds):
            for version, libs in versions.items():
                for source in libs:
                    client.function_load(source.replace(KEY_PLACEHOLDER, secret), replace=True)
                for name, calls in (("ms_fetch", fetches), ("ms_apply", applies[next(taken)])):
                    stat = "fcall_ro" if name == "ms_fetch" else "fcall"
                    client.config_resetstat()
                    before = cpu_s(client)
                    for call in calls:
                        send(*call)
                    spent = cpu_s(client) - before
                    got = figures[version]
                    got.setdefault(f"{name} cpu", []).append(spent * 1e6 / events)
                    got.setdefault(f"{name} commandstats", []).append(usec(client, stat) / events)
        client.close()
    return figures


def msgpack_entries(call: Command) -> list[Any]:
    """The entries of one planned ms_apply call."""
    entries: list[Any] = msgpack.unpackb(call[-4], raw=True)
    return entries


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    figures = run(args)
    print("µs per event (median / min over rounds)")
    for version, got in figures.items():
        for what, values in got.items():
            print(f"  {version:>8} {what:24} {statistics.median(values):6.2f} / {min(values):6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
