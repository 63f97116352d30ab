"""Peers benchmark: memstream against two other ways to keep a chat session in Redis.

    .venv/bin/python bench/peers.py [--lengths 10,1000,10000] [--n N] [--json PATH]

On one private redis-server and the same ``message.appended`` payloads (bench/append.py):

* **memstream**: ``Producer.append_message`` (``FCALL ms_append``), read back with
  ``Reader.history(last=20)`` from the projection that ``memstream worker`` processes keep;
* **LangChain**: ``langchain-community``'s ``RedisChatMessageHistory`` (one Redis list per
  session, ``add_message`` = LPUSH), read back with ``.messages[-20:]``: its API reads the
  whole list, which is what its users get;
* **JSON document**: one JSON document per session, ``GET``, append, ``SET`` per write
  (the "whole-session memory" store), read with ``GET`` and the last 20 of the list.

At each session length the session is filled first (not timed), then ``--n`` appends and
``--n`` reads of each store are timed, interleaved call by call so every store sees the
same machine. Absolute times on a small shared machine are noise; compare within a run.

Appends are timed under two conditions, in alternating blocks of :data:`BLOCK` calls:
with the ``memstream worker`` processes applying each memstream append as it is made
(they share the CPUs with the client and the server, which LangChain's and the document
store's writes never ask for), and with the workers paused (SIGSTOP; SIGCONT after the
block, and they catch up before the reads), so every store's write is timed alone.
``--apply-during yes|no`` keeps one of them.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.append import message
from bench.common import BenchRedis, Report, Target, fmt_us, note, percentile, run_and_report
from bench.workers import Workers
from memstream.producers import Append, Producer, Receipt
from memstream.projections.reader import Reader
from memstream.workers.deploy import init

warnings.filterwarnings("ignore", message=".*langchain-community.*", category=DeprecationWarning)

OWNER = "peer-agent"
LAST = 20
BLOCK = 50
"""Appends per block of one condition (workers applying, workers paused)."""
CONDITIONS = ("applying", "paused")


def lc_history(url: str, session: str) -> Any:
    # Imported by name: the [bench] extra brings langchain-community, type checks need not.
    module = importlib.import_module("langchain_community.chat_message_histories")
    return module.RedisChatMessageHistory(session_id=session, url=url)


def lc_message(i: int) -> Any:
    messages = importlib.import_module("langchain_core.messages")
    m = message(i)
    cls = messages.AIMessage if m.role == "assistant" else messages.HumanMessage
    return cls(content=m.content, additional_kwargs={"meta": m.meta})


class DocStore:
    """The whole session as one JSON document: read, append, rewrite on every write."""

    def __init__(self, client: Any, session: str) -> None:
        self.client = client
        self.key = f"doc:{session}"

    def append(self, entry: dict[str, Any]) -> None:
        raw = self.client.get(self.key)
        doc = json.loads(raw) if raw else {"messages": []}
        doc["messages"].append(entry)
        self.client.set(self.key, json.dumps(doc))

    def last(self, n: int) -> list[dict[str, Any]]:
        raw = self.client.get(self.key)
        return list(json.loads(raw)["messages"][-n:]) if raw else []


def doc_entry(i: int) -> dict[str, Any]:
    m = message(i)
    return {"role": m.role, "content": m.content, "meta": m.meta}


def timed(calls: Sequence[Callable[[int], object]], n: int) -> list[list[float]]:
    samples: list[list[float]] = [[] for _ in calls]
    clock = time.perf_counter_ns
    for i in range(n):
        for j in range(len(calls)):
            k = (i + j) % len(calls)  # rotate who goes first
            t0 = clock()
            calls[k](i)
            samples[k].append((clock() - t0) / 1e9)
    return samples


def fill(url: str, client: Any, producer: Producer, session: str, length: int) -> Any:
    """Put ``length`` messages in each store's session; returns the last memstream receipt."""
    items = [Append(OWNER, message(i), session) for i in range(length)]
    receipts: list[Any] = []
    for start in range(0, length, 1000):
        receipts += producer.append_many(items[start : start + 1000])
    history = lc_history(url, session)
    for start in range(0, length, 1000):
        history.add_messages([lc_message(i) for i in range(start, min(start + 1000, length))])
    doc = {"messages": [doc_entry(i) for i in range(length)]}
    client.set(f"doc:{session}", json.dumps(doc))
    return receipts[-1]


def pause(workers: Workers, paused: bool) -> None:
    """Stop (SIGSTOP) or resume (SIGCONT) the worker processes this benchmark started."""
    for proc in workers.procs:
        os.kill(proc.pid, signal.SIGSTOP if paused else signal.SIGCONT)


def timed_by_condition(
    calls: Sequence[Callable[[int], object]], n: int, workers: Workers, conditions: Sequence[str]
) -> dict[str, list[list[float]]]:
    """:func:`timed` in blocks of :data:`BLOCK` calls, the conditions taking turns."""
    out: dict[str, list[list[float]]] = {c: [[] for _ in calls] for c in conditions}
    try:
        for b, start in enumerate(range(0, n, BLOCK)):
            condition = conditions[b % len(conditions)]
            pause(workers, condition == "paused")
            shifted = [lambda i, f=f, at=start: f(at + i) for f in calls]
            block = timed(shifted, min(BLOCK, n - start))
            for mine, new in zip(out[condition], block, strict=True):
                mine.extend(new)
    finally:
        pause(workers, False)
    return out


def measure(
    url: str,
    client: Any,
    producer: Producer,
    reader: Reader,
    length: int,
    n: int,
    workers: Workers,
    conditions: Sequence[str],
) -> dict[str, Any]:
    session = f"s-{length}"
    last = fill(url, client, producer, session, length)
    reader.wait(last, timeout=600)
    history = lc_history(url, session)
    doc = DocStore(client, session)
    events = [message(i) for i in range(64)]
    lc_msgs = [lc_message(i) for i in range(64)]
    entries = [doc_entry(i) for i in range(64)]

    def ms_append(i: int) -> Receipt:
        e = events[i % 64]
        return producer.append_message(OWNER, session, e.role, e.content, meta=e.meta)

    by_condition = timed_by_condition(
        [
            ms_append,
            lambda i: history.add_message(lc_msgs[i % 64]),
            lambda i: doc.append(entries[i % 64]),
        ],
        n,
        workers,
        conditions,
    )
    # The reads come from the projection: the workers catch up first.
    reader.wait(ms_append(n), timeout=600)
    reads = timed(
        [
            lambda i: reader.history(OWNER, session, last=LAST),
            lambda i: history.messages[-LAST:],
            lambda i: doc.last(LAST),
            lambda i: client.lrange(history.key, 0, LAST - 1),
        ],
        n,
    )
    names = ("memstream", "langchain", "json_doc")
    out: dict[str, Any] = {}
    for k, (name, r) in enumerate(zip(names, reads, strict=False)):
        out[name] = {"read_p50": percentile(r, 50), "read_p99": percentile(r, 99)}
        for condition, appends in by_condition.items():
            a = appends[k]
            out[name][f"append_p50_{condition}"] = percentile(a, 50)
            out[name][f"append_p99_{condition}"] = percentile(a, 99)
    out["raw_lrange_20"] = {
        "read_p50": percentile(reads[3], 50),
        "read_p99": percentile(reads[3], 99),
    }
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--lengths", default="10,1000,10000", help="session lengths")
    parser.add_argument("--n", type=int, default=500, help="timed appends and reads per store")
    parser.add_argument("--workers", type=int, default=1, help="memstream worker processes")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument(
        "--apply-during",
        choices=("both", "yes", "no"),
        default="both",
        help="time appends with the workers applying (yes), paused (no), or both in turns",
    )
    args = parser.parse_args(argv)
    args.length_list = [int(x) for x in args.lengths.split(",") if x]
    args.conditions = {"both": CONDITIONS, "yes": CONDITIONS[:1], "no": CONDITIONS[1:]}[
        args.apply_during
    ]
    return args


def run(args: argparse.Namespace) -> tuple[Report, list[Target]]:
    results: dict[int, dict[str, Any]] = {}
    with BenchRedis() as server, tempfile.TemporaryDirectory() as logdir:
        client = server.client()
        init(client, partitions=16)
        workers = Workers(server.url, args.workers, Path(logdir), "peers")
        try:
            with Producer.from_url(server.url) as producer, Reader.from_url(server.url) as reader:
                for length in args.length_list:
                    note(f"session length {length:,}")
                    workers.check()
                    results[length] = measure(
                        server.url, client, producer, reader, length, args.n, workers,
                        args.conditions,
                    )  # fmt: skip
        finally:
            workers.stop()
        version = server.version
    heads = [f"append p50 ({c})" for c in args.conditions]
    heads += [f"append p99 ({c})" for c in args.conditions]
    rep = Report(
        f"chat session stores on one redis-server {version}: {args.n} timed calls each "
        f"(appends: {', '.join(f'{c} {args.n // len(args.conditions)}' for c in args.conditions)})",
        ("length", "store", *heads, "last 20 p50", "last 20 p99"),
    )
    for length, res in results.items():
        for name in ("memstream", "langchain", "json_doc"):
            r = res[name]
            cells = [fmt_us(r[f"append_p50_{c}"]) for c in args.conditions]
            cells += [fmt_us(r[f"append_p99_{c}"]) for c in args.conditions]
            rep.row(f"{length:,}", name, *cells, fmt_us(r["read_p50"]), fmt_us(r["read_p99"]))
        raw = res["raw_lrange_20"]
        blank = [""] * len(heads)
        rep.row(
            f"{length:,}", "raw LRANGE 0 19", *blank,
            fmt_us(raw["read_p50"]), fmt_us(raw["read_p99"]),
        )  # fmt: skip
    targets = [
        Target(
            f"memstream append_message p50 / LangChain add_message p50 at {length:,}, workers {c}",
            res["memstream"][f"append_p50_{c}"] / res["langchain"][f"append_p50_{c}"],
            1.0,
            False,
        )
        for length, res in results.items()
        for c in args.conditions
    ]
    rep.notes.append(
        "memstream reads Reader.history(last=20) (the projection kept by memstream worker); "
        "LangChain reads .messages[-20:] (its API has no last-n read: LRANGE 0 -1 and "
        "decode); the JSON document store GETs and parses the whole document."
    )
    rep.data = {"results": {str(k): v for k, v in results.items()}, "n": args.n}
    return rep, targets


def main(argv: Sequence[str] | None = None) -> int:
    return run_and_report(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
