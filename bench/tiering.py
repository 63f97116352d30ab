"""Cold-tier benchmark: Redis memory per event before and after archiving, compression,
tiering throughput and read-through latency.

    .venv/bin/python bench/tiering.py [--owners N] [--per-owner M] [--reads R] [--json PATH]

One private redis-server (no persistence), ``memstream init`` with 16 partitions, and a
local-directory archive in a temporary folder (the embedded default).

1. ``N * M`` realistic chat messages (default 100 x 1,000 = 100,000; sentences of 8 to 60
   words from a 400-word vocabulary, with role and a little metadata) are appended with
   ``Producer.append_many``. Every group is then moved past them (``XGROUP SETID $``, as
   if workers had acked everything) and the feeds trimmed, so what remains is the logs.
2. ``INFO memory`` ``used_memory`` is read before the appends, after them (dedup records
   dropped, see :func:`ack_all`), and after one tier pass with ``--older-than 0s``:
   memory per event before and after, and their ratio (target: at least 10x less for
   the archived part). What stays per owner is the emptied log key, its head, and its
   manifest.
3. The pass's own figures: entries/s (one process; target >= 50,000/s) and the segment
   compression ratio (msgpack bytes / zstd bytes).
4. Read-through latency, ``R`` reads each, p50/p99: the newest 100 entries of an owner
   whose older history is cold (4,000 cold, 1,000 hot), against the same read of a fully
   hot owner; and 100 entries spanning the cold/hot boundary with the segment cache warm
   and with it cold (every read fetches and decompresses its segment).

Exit status 0 whatever the outcome.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    BenchRedis,
    Report,
    Target,
    environment,
    note,
    percentile,
    ratio,
    run_and_report,
)
from memstream.producers import Append, Producer, keys
from memstream.producers.events_messages import MessageAppended
from memstream.producers.settings import Settings
from memstream.tiering import ColdLog, Policy, SegmentCache, Tierer
from memstream.tiering.local import LocalArchive
from memstream.workers.deploy import init

PARTITIONS = 16


def words(rng: random.Random) -> list[str]:
    syllables = ["ka", "lo", "mi", "ra", "te", "su", "no", "vi", "de", "pa", "shi", "en", "or"]
    common = "the a to of and is in it you that for on with this be are can I we not do have"
    common += " what your please thanks help error file run test make code need"
    vocab = common.split()
    vocab += ["".join(rng.choices(syllables, k=rng.randint(2, 4))) for _ in range(370)]
    return vocab


def message(rng: random.Random, vocab: list[str], i: int) -> MessageAppended:
    n = rng.randint(8, 60)
    text = " ".join(rng.choices(vocab, k=n)).capitalize() + rng.choice([".", "?", "!"])
    role = "user" if i % 2 == 0 else "assistant"
    return MessageAppended(role=role, content=text, meta={"turn": i, "lang": "en"})


def used(client: object) -> int:
    return int(client.info("memory")["used_memory"])  # type: ignore[attr-defined]


def fill(url: str, owners: list[str], per_owner: int, seed: int = 5) -> None:
    rng = random.Random(seed)
    vocab = words(rng)
    with Producer.from_url(url) as producer:
        batch: list[Append] = []
        for i in range(per_owner):
            for owner in owners:
                batch.append(Append(owner, message(rng, vocab, i), session=f"s{i // 200}"))
                if len(batch) >= 1000:
                    producer.append_many(batch)
                    batch = []
        if batch:
            producer.append_many(batch)


def ack_all(client: object) -> None:
    """What workers would leave behind: every group past every entry, feeds trimmed.
    The dedup records (``eid``, one key per append) are dropped too: they expire after
    ``eid_ttl`` (a day) whether or not the log is tiered, so they are no part of what
    tiering can save."""
    for key in list(client.scan_iter(match=keys.eid_scan_pattern(), count=5000)):  # type: ignore[attr-defined]
        client.unlink(key)  # type: ignore[attr-defined]
    for p in range(PARTITIONS):
        feed = keys.feed(p)
        for g in client.xinfo_groups(feed):  # type: ignore[attr-defined]
            client.xgroup_setid(feed, g["name"], "$")  # type: ignore[attr-defined]
        client.xtrim(feed, maxlen=0)  # type: ignore[attr-defined]


def timed(fn: object, n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append((time.perf_counter() - started) * 1000)
    return out


def run(args: argparse.Namespace) -> tuple[Report, list[Target]]:
    owners = [f"user{i:04d}" for i in range(args.owners)]
    total = args.owners * args.per_owner
    with BenchRedis() as server, tempfile.TemporaryDirectory(prefix="ms-archive-") as tmp:
        client = server.client()
        init(client, partitions=PARTITIONS)
        version = str(client.info("server")["redis_version"])
        archive = LocalArchive(tmp)
        base = used(client)
        note(f"appending {total:,} chat messages for {args.owners} owners")
        fill(server.url, owners, args.per_owner)
        ack_all(client)
        hot_mem = used(client)
        note("tiering everything (one pass, local archive)")
        tierer = Tierer(client, archive, Settings(), Policy(older_than_s=0.0))
        summary = tierer.run_pass()
        cold_mem = used(client)
        assert summary.entries == total, summary.text()
        per_before = (hot_mem - base) / total
        per_after = (cold_mem - base) / total
        rate = summary.entries / summary.seconds

        note("read-through latency")
        fill(server.url, ["coldish"], 5000, seed=9)
        ack_all(client)
        Tierer(client, archive, Settings(), Policy(older_than_s=None, keep_last=1000)).run_pass()
        fill(server.url, ["allhot"], 5000, seed=9)  # the same shape, never tiered
        ack_all(client)
        p_cold, p_hot = (keys.partition(o, PARTITIONS) for o in ("coldish", "allhot"))
        log = ColdLog(client, archive)
        boundary = next(i for i, _ in islice(log.forward(p_cold, "coldish"), 3950, 3951))

        def newest(p: int, owner: str) -> None:
            got = list(islice(log.backward(p, owner, page=100), 100))
            assert len(got) == 100

        def span(cache: SegmentCache | None) -> None:
            reader = ColdLog(client, archive, cache if cache is not None else SegmentCache())
            got = list(islice(reader.forward(p_cold, "coldish", boundary, page=100), 100))
            assert len(got) == 100

        warm = SegmentCache()
        span(warm)
        lat = {
            "newest 100, older history cold": timed(lambda: newest(p_cold, "coldish"), args.reads),
            "newest 100, fully hot log": timed(lambda: newest(p_hot, "allhot"), args.reads),
            "100 across the boundary, cache warm": timed(lambda: span(warm), args.reads),
            "100 across the boundary, cache cold": timed(lambda: span(None), args.reads // 4),
        }
    report = Report("cold tier", ["figure", "value"])
    report.row("events archived", f"{total:,}")
    report.row("memory per event, hot (bytes)", f"{per_before:,.1f}")
    report.row("memory per event, after archiving (bytes)", f"{per_after:,.2f}")
    report.row("memory reduction", f"{ratio(per_before, per_after):,.1f}x")
    report.row("compression ratio (msgpack / zstd)", f"{summary.ratio:.2f}x")
    report.row("segments", f"{summary.segments:,}")
    report.row("tiering throughput (one process)", f"{rate:,.0f} events/s")
    for name, values in lat.items():
        report.row(f"read {name} p50 / p99 ms",
                   f"{percentile(values, 50):.3f} / {percentile(values, 99):.3f}")  # fmt: skip
    slowdown = ratio(percentile(lat["newest 100, older history cold"], 50),
                     percentile(lat["newest 100, fully hot log"], 50))  # fmt: skip
    report.notes.append(
        f"pass: {summary.text()}; newest-100 read, cold-history owner / fully hot: "
        f"{slowdown:.2f}x at p50"
    )
    report.data = {
        "environment": environment(version), "owners": args.owners,
        "per_owner": args.per_owner, "used_memory": {"base": base, "hot": hot_mem,
                                                     "after": cold_mem},
        "per_event_bytes": {"hot": per_before, "after": per_after},
        "compression_ratio": summary.ratio, "segments": summary.segments,
        "raw_bytes": summary.raw_bytes, "stored_bytes": summary.stored_bytes,
        "events_per_s": rate,
        "read_ms": {k: {"p50": percentile(v, 50), "p99": percentile(v, 99)}
                    for k, v in lat.items()},
    }  # fmt: skip
    targets = [
        Target("memory reduction (hot / after)", ratio(per_before, per_after), 10.0, at_least=True),
        Target("tiering events/s (local archive)", rate, 50_000, at_least=True),
    ]
    return report, targets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--owners", type=int, default=100)
    parser.add_argument("--per-owner", type=int, default=1000)
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--json", type=Path, default=None)
    return run_and_report(run, parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
