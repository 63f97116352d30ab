"""Session TTL benchmark: the server cost of a batch of message events, ``ms_apply`` of
the code at a base commit (default: main before the per-call session expiry) against the
working tree's ``workers/lua/apply.lua``.

    .venv/bin/python bench/session_ttl.py [--base REV] [--rounds N] [--batch B]

Two private redis-servers, one per library, receive the very same ``ms_apply`` calls:
the ops of ``--batch`` message events (History and Sessions, as a worker plans them)
spread over 1 or 20 sessions, with no TTL anywhere and with ``history_ttl_s=3600``. The
calls alternate between the servers call by call, so machine noise hits both alike.
Reported: the server's own time per call (``INFO commandstats``, FCALL usec) and the
client's wall time per call, as new/old ratios. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from bench.append import message
from bench.common import BenchRedis, median, ratio
from memstream.producers import keys
from memstream.producers.entry import StoredEvent
from memstream.producers.settings import Settings
from memstream.projections.base import ApplyContext
from memstream.projections.history import History
from memstream.projections.ops import KEY_SLOTS, Writes, apply_command
from memstream.projections.sessions import Sessions

ROOT = Path(__file__).resolve().parent.parent
LUA = "workers/lua/apply.lua"
OWNER = "bench.owner"
VERSION = 1


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="968488b", help="git revision of the old apply.lua")
    parser.add_argument("--rounds", type=int, default=200, help="calls per server and case")
    parser.add_argument("--batch", type=int, default=200, help="message events per call")
    return parser.parse_args(argv)


def load(server: BenchRedis, source: str) -> redis.Redis:
    client = server.client()
    client.function_load(source, replace=True)
    return client


def planned(batch: int, sessions: int, settings: Settings, start: int) -> list[list[Any]]:
    """The ops of ``batch`` message events over ``sessions`` sessions, as a worker plans."""
    p = keys.partition(OWNER, 16)
    ctx = ApplyContext(keys.Projection(p, VERSION), settings, int(time.time() * 1000))
    projections = [History(), Sessions()]
    now = int(time.time() * 1000)
    out = []
    for i in range(batch):
        event = StoredEvent(OWNER, f"{now}-{start + i}", "message.appended", 1,
                            message(i), session=f"s{i % sessions}")  # fmt: skip
        writes = Writes()
        for projection in projections:
            projection.apply(event, ctx, writes)
        out.append(writes.ops)
    return out


def fcall_usec(client: redis.Redis) -> float:
    stats: Any = client.info("commandstats")
    return float(stats.get("cmdstat_fcall", {}).get("usec", 0))


def one_call(client: redis.Redis, feed: str, ops: list[list[Any]]) -> tuple[float, float]:
    """Put ``len(ops)`` pointers on the feed, read them (pending), then time the apply."""
    group = keys.group(VERSION)
    pipe = client.pipeline(transaction=False)
    for _ in ops:
        pipe.xadd(feed, {"o": OWNER, "l": "0-1"})
    ids = [raw.decode() for raw in pipe.execute()]
    client.xreadgroup(group, "bench", {feed: ">"})
    command = apply_command(feed, group, list(zip(ids, ops, strict=True)))
    before = fcall_usec(client)
    call: Any = client.execute_command
    t0 = time.perf_counter()
    acked = call(*command)
    wall = time.perf_counter() - t0
    assert int(acked) == len(ops), acked
    return fcall_usec(client) - before, wall * 1e6


def _seven(ops: list[list[Any]]) -> list[list[Any]]:
    """``ops`` with every SESSEXP cut to its 7 arguments of before the life boundary."""
    return [[op[:7] if op[0] == "SESSEXP" else op for op in entry] for entry in ops]


@contextlib.contextmanager
def _seven_slots(on: bool) -> Iterator[None]:
    """SESSEXP's key positions as they were with 7 arguments, while encoding for the base."""
    if not on:
        yield
        return
    kept = KEY_SLOTS["SESSEXP"]
    KEY_SLOTS["SESSEXP"] = (1, 2, 4)
    try:
        yield
    finally:
        KEY_SLOTS["SESSEXP"] = kept


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    old_src = subprocess.run(["git", "show", f"{args.base}:{LUA}"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout  # fmt: skip
    new_src = (ROOT / LUA).read_text()
    # A base before SESSEXP took the history's cap (the life boundary's walk) gets the
    # same ops less that argument.
    short = "SESSEXP = 7," in old_src
    feed = keys.feed(keys.partition(OWNER, 16))
    cases = [(ttl, sessions) for ttl in (None, 3600) for sessions in (1, 20)]
    with BenchRedis() as a, BenchRedis() as b:
        clients = {"old": load(a, old_src), "new": load(b, new_src)}
        for client in clients.values():
            client.xgroup_create(feed, keys.group(VERSION), id="0", mkstream=True)
        print(f"batch {args.batch} messages, {args.rounds} calls per server and case, "
              f"base {args.base}")  # fmt: skip
        print("history_ttl_s sessions  server us/call old  new  ratio   wall us/call ratio")
        for ttl, sessions in cases:
            settings = Settings(history_ttl_s=ttl)
            times: dict[str, list[tuple[float, float]]] = {"old": [], "new": []}
            for r in range(args.rounds):
                ops = planned(args.batch, sessions, settings, r * args.batch)
                order = ("old", "new") if r % 2 == 0 else ("new", "old")
                for name in order:
                    cut = name == "old" and short
                    with _seven_slots(cut):
                        times[name].append(
                            one_call(clients[name], feed, _seven(ops) if cut else ops)
                        )
            srv = {n: median([t[0] for t in v]) for n, v in times.items()}
            wall = {n: median([t[1] for t in v]) for n, v in times.items()}
            print(f"{ttl!s:>13} {sessions:>8}  {srv['old']:>17.0f} {srv['new']:>4.0f} "
                  f"{ratio(srv['new'], srv['old']):>6.2f}   "
                  f"{ratio(wall['new'], wall['old']):>17.2f}")  # fmt: skip
            for client in clients.values():
                client.xtrim(feed, maxlen=0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
