"""Conversation search benchmark: ``search_messages`` keyword over many sessions and
semantic over many message vectors, the working tree's code against a base commit's.

    .venv/bin/python bench/messages_search.py [--base REV] [--sessions 1000]
        [--per-session 20] [--vectors 100000] [--queries 100] [--json PATH]

One private redis-server (no persistence). Two owners are written straight through the
projections' apply path (History and Sessions, plus Vectors for the second, its vectors
embedded by wordllama in batches with ``Vectors.prepare_batch`` as the worker does) with
``ms_write`` in batches of 1,000 events, as replay writes; the log is not written, since
neither read touches it while every message is hot:

- keyword: ``--sessions`` sessions of ``--per-session`` messages each;
- semantic: ``--vectors`` messages over 1,000 sessions (``history_cap`` = their count per
  session, so every body is hot), ``embed_messages`` on.

Message texts draw 6 to 14 words from a 5,000-word Zipf vocabulary (bench/search.py),
queries 1 to 3 words. The base commit's ``projections/reads_vectors.py`` (default: the
commit before the batched message search) is loaded from git as a module of its own and
runs against the same reader, server and data; every query runs both, alternating which
goes first, and both must return the same hits. Reported: p50/p99 of each, new/old, and
one pipelined round trip (``ZCARD``) of the same client for scale. Target: new p99 <= 50
ms per mode. Exit status 0 either way.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
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
from bench.search import vocabulary
from memstream.producers import Settings, keys
from memstream.producers.entry import StoredEvent
from memstream.producers.events_messages import MessageAppended
from memstream.projections import reads_vectors
from memstream.projections.base import ApplyContext, Projection
from memstream.projections.history import History
from memstream.projections.ops import Writes, write_command
from memstream.projections.reader import AsyncReader
from memstream.projections.reads_vectors import MessageMode
from memstream.projections.sessions import Sessions
from memstream.projections.vectors import Vectors
from memstream.workers.deploy import init
from memstream.workers.plan import Pointer

ROOT = Path(__file__).resolve().parent.parent
KEYWORD_OWNER = "agent.keyword"
SEMANTIC_OWNER = "agent.semantic"
SEMANTIC_SESSIONS = 1000
BATCH = 1000
P99_MS = 50.0


def base_module(rev: str) -> ModuleType:
    """``projections/reads_vectors.py`` at ``rev``, imported beside the current one (its
    relative imports resolve against the working tree's package)."""
    source = subprocess.run(["git", "show", f"{rev}:projections/reads_vectors.py"], cwd=ROOT,
                            check=True, capture_output=True, text=True).stdout  # fmt: skip
    name = "memstream.projections._bench_base_reads_vectors"
    spec = importlib.util.spec_from_loader(name, loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "memstream.projections"
    sys.modules[name] = module
    exec(compile(source, f"{rev}:projections/reads_vectors.py", "exec"), module.__dict__)
    return module


def _fields(event: StoredEvent) -> dict[bytes, bytes]:
    """The log entry of an event, as the vector projection's batch step reads it."""
    return {b"type": event.type.encode(), b"v": str(event.version).encode(), b"ct": b"json",
            b"data": event.event.model_dump_json().encode(),
            b"session": (event.session or "").encode()}  # fmt: skip


def load(
    client: Any, owner: str, sessions: int, per_session: int, settings: Settings,
    texts: list[str],
) -> float:  # fmt: skip
    """Fold ``sessions`` x ``per_session`` messages of ``owner`` (round robin over the
    sessions, one millisecond apart) and write them; returns seconds."""
    meta: Any = client.hgetall(keys.META)
    pk = keys.Projection(keys.partition(owner, int(meta[b"partitions"])), int(meta[b"version"]))
    now = int(time.time() * 1000)
    ctx = ApplyContext(pk, settings, now)
    vectors = Vectors()
    folds: list[Projection] = [History(), Sessions()]
    if settings.embed_messages:
        folds.append(vectors)
    total = sessions * per_session
    start = now - total - 60_000
    started = time.perf_counter()
    with progress() as bar:
        task = bar.add_task(f"load {owner}", total=total)
        for first in range(0, total, BATCH):
            events = []
            for i in range(first, min(first + BATCH, total)):
                role = "user" if i % 2 == 0 else "assistant"
                message = MessageAppended(role=role, content=texts[i % len(texts)])
                events.append(StoredEvent(owner, f"{start + i}-0", message.TYPE, 1, message,
                                          session=f"s{i % sessions}"))  # fmt: skip
            if settings.embed_messages:
                pointers = {e.log_id: Pointer(owner, e.log_id) for e in events}
                vectors.prepare_batch(settings, pointers, {e.log_id: _fields(e) for e in events})
            batches = []
            for event in events:
                writes = Writes()
                for fold in folds:
                    fold.apply(event, ctx, writes)
                batches.append(writes.ops)
            client.execute_command(*write_command(batches))
            bar.advance(task, len(events))
    return time.perf_counter() - started


def same(a: list[Any], b: list[Any]) -> bool:
    return [(h.session, h.log_id, h.score) for h in a] == [(h.session, h.log_id, h.score)
                                                            for h in b]  # fmt: skip


async def measure(
    settings: Settings,
    base: ModuleType,
    cases: list[tuple[str, str, MessageMode]],
    queries: list[str],
) -> dict[str, Any]:
    """Each (name, owner, mode) over the queries: old and new, alternating first."""
    old_search = base.AsyncVectorReads.search_messages
    new_search = reads_vectors.AsyncVectorReads.search_messages
    out: dict[str, Any] = {"baseline": [], "mismatches": {}}
    async with AsyncReader.from_settings(settings) as reader:
        for _ in range(len(queries)):
            t = time.perf_counter()
            pipe = reader.client.pipeline(transaction=False)
            pipe.zcard("ms:bench")
            await pipe.execute()
            out["baseline"].append(time.perf_counter() - t)
        for name, owner, mode in cases:
            times: dict[str, list[float]] = {"old": [], "new": []}
            mismatches = 0
            first = await new_search(reader, owner, queries[0], mode=mode)  # warm: model, matrix
            note(f"{name}: first query {len(first)} hits")
            for n, query in enumerate(queries):
                found = {}
                order = (("old", old_search), ("new", new_search))
                for label, search in order if n % 2 == 0 else order[::-1]:
                    t = time.perf_counter()
                    found[label] = await search(reader, owner, query, mode=mode)
                    times[label].append(time.perf_counter() - t)
                mismatches += not same(found["old"], found["new"])
            out[name] = times
            out["mismatches"][name] = mismatches
    return out


def run(args: argparse.Namespace) -> tuple[Report, list[Target]]:
    rng = random.Random(23)
    vocab, weights = vocabulary(rng)
    texts = [" ".join(rng.choices(vocab, weights, k=rng.randint(6, 14))) for _ in range(20_000)]
    queries = [" ".join(rng.choices(vocab, weights, k=rng.randint(1, 3)))
               for _ in range(args.queries)]  # fmt: skip
    base = base_module(args.base)
    per_vector_session = max(1, args.vectors // SEMANTIC_SESSIONS)
    with BenchRedis() as server:
        client = server.client()
        init(client, partitions=16)
        # One settings object for loading and reading: every message of both owners hot.
        settings = Settings.from_url(
            server.url, embed_messages=True,
            history_cap=max(args.per_session, per_vector_session),
        )  # fmt: skip
        kw_s = load(client, KEYWORD_OWNER, args.sessions, args.per_session, settings, texts)
        sem_s = load(client, SEMANTIC_OWNER, SEMANTIC_SESSIONS, per_vector_session, settings,
                     texts)  # fmt: skip
        note(f"loaded keyword owner in {kw_s:.1f} s, semantic owner in {sem_s:.1f} s")
        cases: list[tuple[str, str, MessageMode]] = [
            ("keyword", KEYWORD_OWNER, "keyword"),
            ("semantic", SEMANTIC_OWNER, "semantic"),
            ("hybrid", SEMANTIC_OWNER, "hybrid"),
        ]
        timings = asyncio.run(measure(settings, base, cases, queries))
        env = environment(server.version)
    rtt = percentile([v * 1e3 for v in timings["baseline"]], 50)
    rep = Report(
        f"search_messages: keyword over {args.sessions:,} sessions x {args.per_session}, "
        f"semantic over {per_vector_session * SEMANTIC_SESSIONS:,} message vectors",
        ("measure", "old p50 ms", "old p99 ms", "new p50 ms", "new p99 ms", "new/old p50",
         "new/old p99", "mismatches"),
    )  # fmt: skip
    rep.row("one round trip (ZCARD)", f"{rtt:.3f}", "", "", "", "", "", "")
    targets, data = [], {}
    for name, _, _ in cases:
        old = [v * 1e3 for v in timings[name]["old"]]
        new = [v * 1e3 for v in timings[name]["new"]]
        o50, o99, n50, n99 = (percentile(old, 50), percentile(old, 99), percentile(new, 50),
                              percentile(new, 99))  # fmt: skip
        rep.row(name, f"{o50:.2f}", f"{o99:.2f}", f"{n50:.2f}", f"{n99:.2f}",
                f"{ratio(n50, o50):.3f}", f"{ratio(n99, o99):.3f}",
                str(timings["mismatches"][name]))  # fmt: skip
        data[name] = {"old_p50": o50, "old_p99": o99, "new_p50": n50, "new_p99": n99,
                      "mismatches": timings["mismatches"][name]}  # fmt: skip
        targets.append(Target(f"{name} new p99 (ms)", n99, P99_MS, at_least=False))
    rep.notes.append(f"{len(queries)} queries per mode, base {args.base}")
    rep.data = {"sessions": args.sessions, "per_session": args.per_session,
                "vectors": per_vector_session * SEMANTIC_SESSIONS, "queries": len(queries),
                "base": args.base, "env": env, "ms": data, "round_trip_ms": rtt}  # fmt: skip
    return rep, targets


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="a9c8620", help="git revision of the old search")
    parser.add_argument("--sessions", type=int, default=1000, help="keyword owner's sessions")
    parser.add_argument("--per-session", type=int, default=20, help="messages per session")
    parser.add_argument("--vectors", type=int, default=100_000, help="semantic owner's messages")
    parser.add_argument("--queries", type=int, default=100, help="queries per mode")
    parser.add_argument("--json", type=Path, default=None, help="write results here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return run_and_report(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
