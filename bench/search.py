"""Search benchmark: ``Reader.search`` p50/p99 over 100,000 episodes of one owner, and
``Reader.context`` p50.

    .venv/bin/python bench/search.py [--n N] [--queries Q] [--json PATH]

One private redis-server (no persistence). Loading: ``N`` ``episode.saved`` events of one
owner, their times spread over the last 25 days, are folded by the real projections
(Episodes and SearchIndex, the ops a worker would send) and written with ``ms_write`` in
batches of 500, as replay writes; the log itself is not written, since no read touches
it. Texts draw 6 to 14 task words and 0 to 8 outcome words from a 5,000-word vocabulary
with Zipf-distributed frequencies (exponent 1), so common words sit in tens of thousands
of episodes; queries draw 1 to 3 words from the same distribution, so they hit common and
rare words alike.

Then ``Q`` searches (limit 10) run one after the other through ``AsyncReader`` and each
is timed from call to return; ``context()`` (budget 4,000 characters, 5 working steps)
runs ``Q / 3`` times. The baseline is one pipelined round trip of the same client
(``ZCARD`` of one posting set), measured in the same run, so the ratio says how many
round trips' worth of time a search costs. Targets: search p99 <= 50 ms, context p50 <=
20 ms. The exit status is 0 whether or not the targets are met.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
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
    progress,
    ratio,
    run_and_report,
)
from memstream.producers import Settings, keys
from memstream.producers.entry import StoredEvent
from memstream.producers.events import EpisodeSaved, StepRecorded
from memstream.projections.base import ApplyContext
from memstream.projections.episodes import Episodes
from memstream.projections.ops import Writes, write_command
from memstream.projections.reader import AsyncReader
from memstream.projections.search_index import SearchIndex, posting_key
from memstream.projections.working import Working
from memstream.workers.deploy import init

OWNER = "agent.bench"
SEARCH_P99_MS = 50.0
CONTEXT_P50_MS = 20.0
BATCH = 500


def vocabulary(rng: random.Random, n: int = 5000) -> tuple[list[str], list[float]]:
    letters = "bcdfghjklmnprstvz"
    vowels = "aeiou"
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choice(letters) + rng.choice(vowels) for _ in range(3)))
    return sorted(words), [1 / (r + 1) for r in range(n)]


def load(client: Any, n: int, rng: random.Random, vocab: list[str], weights: list[float]) -> float:
    """Fold ``n`` episodes through the real projections and write them; returns seconds."""
    meta: Any = client.hgetall(keys.META)
    pk = keys.Projection(keys.partition(OWNER, int(meta[b"partitions"])), int(meta[b"version"]))
    now = int(time.time() * 1000)
    ctx = ApplyContext(pk, Settings(), now)
    folds = [Episodes(), SearchIndex()]
    start = now - 25 * 86_400_000
    step = (now - start) // n
    started = time.perf_counter()
    with progress() as bar:
        task = bar.add_task("load episodes", total=n)
        for first in range(0, n, BATCH):
            batches = []
            for i in range(first, min(first + BATCH, n)):
                task_words = rng.choices(vocab, weights, k=rng.randint(6, 14))
                outcome = rng.choices(vocab, weights, k=rng.randint(0, 8))
                e = EpisodeSaved(episode_id=f"ep-{i}", task=" ".join(task_words),
                                 outcome=" ".join(outcome), success=rng.random() < 0.7,
                                 importance=round(rng.random(), 2))  # fmt: skip
                event = StoredEvent(OWNER, f"{start + i * step}-0", e.TYPE, 1, e)
                writes = Writes()
                for fold in folds:
                    fold.apply(event, ctx, writes)
                batches.append(writes.ops)
            client.execute_command(*write_command(batches))
            bar.advance(task, len(batches))
    for i in range(5):
        step_event = StepRecorded(action=f"look at {vocab[i]}", observation="fine")
        stored = StoredEvent(OWNER, f"{now - 1000 + i}-0", step_event.TYPE, 1, step_event)
        writes = Writes()
        Working().apply(stored, ctx, writes)
        client.execute_command(*write_command([writes.ops]))
    return time.perf_counter() - started


async def measure(url: str, queries: list[str], baseline_key: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"search": [], "context": [], "hits": [], "baseline": []}
    async with AsyncReader.from_url(url) as reader:
        for q in queries[:20]:  # warm the connection pool and the version cache
            await reader.search(OWNER, q)
        for _ in range(len(queries)):
            t = time.perf_counter()
            pipe = reader.client.pipeline(transaction=False)
            pipe.zcard(baseline_key)
            await pipe.execute()
            out["baseline"].append(time.perf_counter() - t)
        for q in queries:
            t = time.perf_counter()
            found = await reader.search(OWNER, q, limit=10)
            out["search"].append(time.perf_counter() - t)
            out["hits"].append(found["total"])
        for q in queries[: max(1, len(queries) // 3)]:
            t = time.perf_counter()
            await reader.context(OWNER, q, budget_chars=4000)
            out["context"].append(time.perf_counter() - t)
    return out


def run(args: argparse.Namespace) -> tuple[Report, list[Target]]:
    rng = random.Random(11)
    vocab, weights = vocabulary(rng)
    with BenchRedis() as server:
        client = server.client()
        init(client, partitions=16)
        load_s = load(client, args.n, rng, vocab, weights)
        note(f"loaded {args.n:,} episodes in {load_s:.1f} s ({args.n / load_s:,.0f}/s)")
        queries = [" ".join(rng.choices(vocab, weights, k=rng.randint(1, 3)))
                   for _ in range(args.queries)]  # fmt: skip
        pk = keys.Projection(keys.partition(OWNER, 16), 1)
        timings = asyncio.run(measure(server.url, queries, posting_key(pk, OWNER, vocab[0])))
        used_mb = int(client.info("memory")["used_memory"]) / 1e6
        env = environment(server.version)
    ms = {name: [v * 1e3 for v in values] for name, values in timings.items() if name != "hits"}
    base = percentile(ms["baseline"], 50)
    rep = Report(
        f"memstream search over {args.n:,} episodes of one owner",
        ("measure", "p50 ms", "p99 ms", "p50 / round trip"),
    )
    rep.row("one round trip (ZCARD)", f"{base:.3f}", f"{percentile(ms['baseline'], 99):.3f}", "1")
    for name in ("search", "context"):
        p50, p99 = percentile(ms[name], 50), percentile(ms[name], 99)
        rep.row(f"{name}()", f"{p50:.2f}", f"{p99:.2f}", f"{ratio(p50, base):.1f}")
    hits = sorted(timings["hits"])
    rep.notes.append(
        f"{len(queries)} queries; scored candidates per query: median {hits[len(hits) // 2]:,.0f}, "
        f"max {hits[-1]:,.0f}; Redis used {used_mb:,.0f} MB"
    )
    rep.data = {"n": args.n, "queries": len(queries), "load_s": load_s, "env": env,
                "ms": {k: {"p50": percentile(v, 50), "p99": percentile(v, 99)}
                       for k, v in ms.items()}}  # fmt: skip
    targets = [
        Target("search p99 (ms)", percentile(ms["search"], 99), SEARCH_P99_MS, at_least=False),
        Target("context p50 (ms)", percentile(ms["context"], 50), CONTEXT_P50_MS, at_least=False),
    ]
    return rep, targets


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="episodes to load")
    parser.add_argument("--queries", type=int, default=600, help="searches to time")
    parser.add_argument("--json", type=Path, default=None, help="write results here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return run_and_report(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
