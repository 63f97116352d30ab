"""Framework adapters against the frameworks' own Redis/SQLite backends, in one run.

Sections (``--only NAME`` runs one; each is a function in :data:`SECTIONS` that adds its
rows to the report, so a new adapter adds one function and one entry):

- ``langchain``: one chat turn = ``add_messages([human, ai])`` then ``messages``, on
  :class:`MemstreamChatMessageHistory` (the append, a real worker process applying it,
  read-your-writes, the history read) and on langchain-community's
  ``RedisChatMessageHistory`` (RPUSH + LRANGE) on the same private redis-server.
- ``checkpointer``: one graph step = ``put`` (a checkpoint with two changed channels,
  chained to its parent) then ``get_tuple`` of the thread's latest, on
  :class:`MemstreamCheckpointSaver` (the append, a real worker process applying it,
  read-your-writes, the projection read) and on LangGraph's ``SqliteSaver`` (a file in a
  temporary directory, one connection).

Ratios are memstream / baseline latency (lower is better). The machine may be shared
and noisy: compare ratios, not absolute times. Needs ``pip install -e '.[dev,bench]'``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from bench.common import (
    BenchRedis,
    Report,
    Target,
    environment,
    fmt_us,
    note,
    percentile,
    ratio,
    run_and_report,
)
from memstream.integrations.langchain import MemstreamChatMessageHistory
from memstream.integrations.langgraph_checkpoint import MemstreamCheckpointSaver
from memstream.workers.deploy import init

Turn = tuple[float, float, float]
Section = Callable[[argparse.Namespace, str, Report], None]

TURN_TEXT = "What is the weather like in Lisbon this afternoon, and should I take a coat?"


def turn(i: int) -> list[BaseMessage]:
    return [HumanMessage(f"{TURN_TEXT} ({i})"), AIMessage(f"Sunny, 21C: no coat needed ({i}).")]


def time_turns(
    history_for: Callable[[str], object], turns: int, per_session: int, tag: str
) -> list[tuple[float, float, float]]:
    """Seconds per turn: (add_messages, then messages, then messages again); a new session
    (named after ``tag``) every ``per_session`` turns, so each read returns up to
    2 * per_session messages. The second read has no write of its own to wait for."""
    out: list[tuple[float, float, float]] = []
    history: Any = None
    for i in range(turns):
        if i % per_session == 0:
            _close(history)
            history = history_for(f"{tag}-{i // per_session}")
        t0 = time.perf_counter()
        history.add_messages(turn(i))
        t1 = time.perf_counter()
        got = history.messages
        t2 = time.perf_counter()
        again = history.messages
        t3 = time.perf_counter()
        out.append((t1 - t0, t2 - t1, t3 - t2))
        assert len(got) == len(again) == 2 * (i % per_session + 1), len(got)
    _close(history)
    return out


def _close(history: Any) -> None:
    close = getattr(history, "close", None)
    if close is not None:
        close()


def langchain_section(args: argparse.Namespace, url: str, report: Report) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # langchain-community's sunset
        from langchain_community.chat_message_histories import RedisChatMessageHistory

    def ours(session: str) -> object:
        return MemstreamChatMessageHistory.from_url(url, "bench.lc", session)

    def theirs(session: str) -> object:
        return RedisChatMessageHistory(session, url=url)

    time_turns(ours, 20, args.per_session, "warm")  # connections, deployment, worker
    time_turns(theirs, 20, args.per_session, "warm")
    mine: list[tuple[float, float, float]] = []
    base: list[tuple[float, float, float]] = []
    for k in range(args.rounds):  # interleaved, so drift on a shared machine hits both
        mine += time_turns(ours, args.turns // args.rounds, args.per_session, f"r{k}")
        base += time_turns(theirs, args.turns // args.rounds, args.per_session, f"r{k}")
    figures: list[tuple[str, Callable[[Turn], float]]] = [
        ("chat turn {q} (add_messages + messages)", lambda t: t[0] + t[1]),
        ("  add_messages {q}", lambda t: t[0]),
        ("  messages after add {q}", lambda t: t[1]),
        ("  messages again {q}", lambda t: t[2]),
    ]
    for label, pick in figures:
        for q in (50, 99):
            m, b = percentile([pick(t) for t in mine], q), percentile([pick(t) for t in base], q)
            report.row(label.format(q=f"p{q}"), fmt_us(m), fmt_us(b), f"{ratio(m, b):.2f}")
    report.data["langchain"] = {"ours_s": mine, "baseline_s": base}
    report.notes.append(
        f"langchain: baseline is RedisChatMessageHistory; {len(mine)} turns per side, "
        f"{args.per_session} turns per session; ours includes a worker process applying "
        "each append (read-your-writes)"
    )


def step_checkpoint(cid: str, step: int) -> dict[str, Any]:
    """A checkpoint as a small chat graph writes it: messages and a counter changed."""
    messages = [{"role": "user", "content": f"{TURN_TEXT} ({i})"} for i in range(step % 10 + 1)]
    versions = {"messages": step + 1, "step": step + 1, "__start__": 1}
    return {"v": 1, "id": cid, "ts": "2026-01-01T00:00:00+00:00",
            "channel_values": {"messages": messages, "step": step, "__start__": None},
            "channel_versions": versions, "versions_seen": {"agent": dict(versions)},
            "pending_sends": [], "updated_channels": ["messages", "step"]}  # fmt: skip


def time_steps(saver: Any, steps: int, per_thread: int, tag: str) -> list[Turn]:
    """Seconds per step: (put, then get_tuple of the thread's latest, then get_tuple
    again); a new thread (named after ``tag``) every ``per_thread`` steps. The second
    read has no write of its own to wait for."""
    from langgraph.checkpoint.base.id import uuid6

    out: list[Turn] = []
    parent: Any = None
    for i in range(steps):
        if i % per_thread == 0:
            parent = {
                "configurable": {"thread_id": f"{tag}-{i // per_thread}", "checkpoint_ns": ""}
            }
        cid = str(uuid6(clock_seq=i))
        t0 = time.perf_counter()
        parent = saver.put(parent, step_checkpoint(cid, i), {"source": "loop", "step": i},
                           {"messages": i + 1, "step": i + 1})  # fmt: skip
        t1 = time.perf_counter()
        latest = saver.get_tuple(
            {"configurable": {**parent["configurable"], "checkpoint_id": None}}
        )
        t2 = time.perf_counter()
        again = saver.get_tuple(parent)
        t3 = time.perf_counter()
        out.append((t1 - t0, t2 - t1, t3 - t2))
        assert latest is not None and latest.checkpoint["id"] == cid, latest
        assert again is not None and again.checkpoint == latest.checkpoint
    return out


def checkpointer_section(args: argparse.Namespace, url: str, report: Report) -> None:
    import sqlite3
    import tempfile

    from langgraph.checkpoint.sqlite import SqliteSaver

    ours = MemstreamCheckpointSaver.from_url(url, "bench.lg")
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(Path(tmp) / "checkpoints.db", check_same_thread=False)
        theirs = SqliteSaver(conn)
        try:
            time_steps(ours, 20, args.per_session, "warm")
            time_steps(theirs, 20, args.per_session, "warm")
            mine: list[Turn] = []
            base: list[Turn] = []
            for k in range(args.rounds):  # interleaved, as for langchain
                mine += time_steps(ours, args.turns // args.rounds, args.per_session, f"r{k}")
                base += time_steps(theirs, args.turns // args.rounds, args.per_session, f"r{k}")
        finally:
            ours.close()
            conn.close()
    figures: list[tuple[str, Callable[[Turn], float]]] = [
        ("graph step {q} (put + get_tuple)", lambda t: t[0] + t[1]),
        ("  put {q}", lambda t: t[0]),
        ("  get_tuple after put {q}", lambda t: t[1]),
        ("  get_tuple again {q}", lambda t: t[2]),
    ]
    for label, pick in figures:
        for q in (50, 99):
            m, b = percentile([pick(t) for t in mine], q), percentile([pick(t) for t in base], q)
            report.row(label.format(q=f"p{q}"), fmt_us(m), fmt_us(b), f"{ratio(m, b):.2f}")
    report.data["checkpointer"] = {"ours_s": mine, "baseline_s": base}
    report.notes.append(
        f"checkpointer: baseline is langgraph-checkpoint-sqlite's SqliteSaver (file, one "
        f"connection); {len(mine)} steps per side, {args.per_session} steps per thread; ours "
        "includes a worker process applying each put (read-your-writes)"
    )


SECTIONS: dict[str, Section] = {
    "langchain": langchain_section,
    "checkpointer": checkpointer_section,
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=sorted(SECTIONS), action="append")
    ap.add_argument("--turns", type=int, default=1000, help="chat turns (graph steps) per side")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds per side")
    ap.add_argument("--per-session", type=int, default=10, help="turns per session (thread)")
    ap.add_argument("--json", type=Path, default=None, help="write the results as JSON")
    return ap.parse_args(argv)


def run(args: argparse.Namespace) -> tuple[Report, list[Target]]:
    report = Report("integrations", ["figure", "memstream", "baseline", "ratio"])
    with BenchRedis() as server:
        init(server.client(), partitions=16)
        worker = subprocess.Popen(
            [sys.executable, "-m", "memstream.workers.cli", "worker", "--redis-url",
             server.url, "--consumer", "bench", "--block-ms", "100"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            note(f"redis-server {server.version} on port {server.port}, one worker process")
            for name in args.only or list(SECTIONS):
                SECTIONS[name](args, server.url, report)
        finally:
            worker.terminate()
            worker.wait(timeout=30)
        report.data["env"] = environment(server.version)
    return report, []


def main(argv: Sequence[str] | None = None) -> int:
    return run_and_report(run, parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
