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
"""

from __future__ import annotations

import argparse
import importlib
import json
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
from memstream.producers import Append, Producer
from memstream.projections.reader import Reader
from memstream.workers.deploy import init

warnings.filterwarnings("ignore", message=".*langchain-community.*", category=DeprecationWarning)

OWNER = "peer-agent"
LAST = 20


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


def measure(
    url: str, client: Any, producer: Producer, reader: Reader, length: int, n: int
) -> dict[str, Any]:
    session = f"s-{length}"
    last = fill(url, client, producer, session, length)
    reader.wait(last, timeout=600)
    history = lc_history(url, session)
    doc = DocStore(client, session)
    events = [message(i) for i in range(64)]
    lc_msgs = [lc_message(i) for i in range(64)]
    entries = [doc_entry(i) for i in range(64)]

    def ms_append(i: int) -> object:
        e = events[i % 64]
        return producer.append_message(OWNER, session, e.role, e.content, meta=e.meta)

    appends = timed(
        [
            ms_append,
            lambda i: history.add_message(lc_msgs[i % 64]),
            lambda i: doc.append(entries[i % 64]),
        ],
        n,
    )
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
    for name, a, r in zip(names, appends, reads, strict=False):
        out[name] = {
            "append_p50": percentile(a, 50),
            "append_p99": percentile(a, 99),
            "read_p50": percentile(r, 50),
            "read_p99": percentile(r, 99),
        }
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
    args = parser.parse_args(argv)
    args.length_list = [int(x) for x in args.lengths.split(",") if x]
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
                    results[length] = measure(server.url, client, producer, reader, length, args.n)
        finally:
            workers.stop()
        version = server.version
    rep = Report(
        f"chat session stores on one redis-server {version}: {args.n} timed calls each",
        ("length", "store", "append p50", "append p99", "last 20 p50", "last 20 p99"),
    )
    for length, res in results.items():
        for name in ("memstream", "langchain", "json_doc"):
            r = res[name]
            rep.row(
                f"{length:,}", name, fmt_us(r["append_p50"]), fmt_us(r["append_p99"]),
                fmt_us(r["read_p50"]), fmt_us(r["read_p99"]),
            )  # fmt: skip
        raw = res["raw_lrange_20"]
        rep.row(
            f"{length:,}",
            "raw LRANGE 0 19",
            "",
            "",
            fmt_us(raw["read_p50"]),
            fmt_us(raw["read_p99"]),
        )
    targets = [
        Target(
            f"memstream append_message p50 / LangChain add_message p50 at {length:,}",
            res["memstream"]["append_p50"] / res["langchain"]["append_p50"],
            1.0,
            False,
        )
        for length, res in results.items()
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
