"""``memstream demo``: three agents remember through a private Redis and two workers.

Everything runs under one directory (``.memstream`` by default): Redis with its
append-only file, and the workers' logs. A second run finds the first run's memories
and continues them: each run starts new sessions linked to the previous run's last one,
so the session chain and the message count grow. Whatever happens (an error, Ctrl-C,
SIGTERM) the workers are stopped first and Redis last.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
from rich.console import Console

from memstream.producers import Producer, Receipt, keys
from memstream.producers.errors import MemstreamError
from memstream.projections.reader import Reader
from memstream.projections.wait import WaitTimeoutError

from .deploy import init
from .embedded import EmbeddedRedis
from .procs import stop_all
from .replay import read_deployment
from .status import gather, render

WAIT_S = 30.0
"""Per receipt. Generous: the first batch waits for the workers' start-up."""

WORKER_STOP_S = 15.0
"""A worker finishes its batch in hand and returns within one block interval."""


class DemoError(MemstreamError):
    """The demo could not run (a worker died, entries were not applied in time)."""


Turn = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Agent:
    owner: str
    job: str
    before: Sequence[Turn]
    """Turns of the run's first session; ``after`` follow in the rotated one."""
    after: Sequence[Turn]
    steps: Sequence[tuple[str, str, bool]]
    state: dict[str, Any] = field(default_factory=dict)
    data: tuple[str, Any] = ("topic", "")


AGENTS = (
    Agent(
        "agent.ada", "travel planner",
        before=[("Plan a weekend in Lisbon.", "Day 1: Alfama and the castle; day 2: Belem."),
                ("Keep it under 400 euros.", "Then a guesthouse in Graca and the 28 tram.")],
        after=[("Book the train to Sintra for Sunday.", "Booked: the 9:11 from Rossio.")],
        steps=[("search_trains", "3 trains before 10:00", True),
               ("book_ticket", "coach 3, seat 42", True)],
        state={"city": "Lisbon", "budget_eur": 400}, data=("language", "pt"),
    ),
    Agent(
        "agent.bob", "code reviewer",
        before=[("Review PR 7: it adds a Redis cache.", "The keys have no TTL: it grows forever."),
                ("Anything else?", "A bare except hides connection errors.")],
        after=[("Both fixed. Approve?", "Approved; please add a test for the TTL.")],
        steps=[("run_tests", "212 passed", True), ("lint", "2 warnings", False)],
        state={"repo": "shop-api", "open_prs": 1}, data=("pr", 7),
    ),
    Agent(
        "agent.cy", "cook",
        before=[("What can I cook with leeks and potatoes?", "Vichyssoise, a leek soup."),
                ("I have no cream.", "Use milk, and one more potato for body.")],
        after=[("How long does it keep?", "Three days in the fridge, covered.")],
        steps=[("check_pantry", "leeks, potatoes, milk", True),
               ("set_timer", "35 minutes", True)],
        state={"diet": "vegetarian", "servings": 4}, data=("servings", 4),
    ),
)  # fmt: skip


def sessions_of(run: int) -> tuple[str, str]:
    """The run's two sessions: the second is the rotation of the first."""
    return f"s{run}.1", f"s{run}.2"


class WorkerProcesses:
    """``memstream worker`` processes, each logging to ``<data_dir>/worker-N.log``."""

    def __init__(self, url: str, data_dir: Path, count: int) -> None:
        self.url, self.data_dir, self.count = url, data_dir, count
        self.procs: list[subprocess.Popen[bytes]] = []

    def log(self, i: int) -> Path:
        return self.data_dir / f"worker-{i}.log"

    def __enter__(self) -> WorkerProcesses:
        # The private Redis has no users or TLS: MEMSTREAM_* settings meant for another
        # server (a password, say) must not reach these workers.
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEMSTREAM_")}
        try:
            for i in range(1, self.count + 1):
                with self.log(i).open("ab") as log:
                    self.procs.append(
                        subprocess.Popen(  # noqa: S603 (our own interpreter and flags)
                            [sys.executable, "-m", "memstream.workers.cli", "worker",
                             "--redis-url", self.url, "--consumer", f"demo-{i}",
                             "--block-ms", "500"],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            # Own session: Ctrl-C reaches the demo, which then stops us.
                            env=env, start_new_session=True,
                        )
                    )  # fmt: skip
        except BaseException:
            self.stop()
            raise
        return self

    def check(self) -> None:
        """Raise if a worker has exited: nothing would apply the appends."""
        for i, proc in enumerate(self.procs, 1):
            if proc.poll() is not None:
                raise DemoError(
                    f"worker demo-{i} exited with status {proc.returncode}; see {self.log(i)}"
                )

    def stop(self) -> None:
        """SIGTERM all, then wait: each finishes its batch in hand first."""
        stop_all(self.procs, WORKER_STOP_S)
        self.procs = []

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.stop()


class ShieldedExitStack(contextlib.ExitStack):
    """An ExitStack that ignores Ctrl-C and SIGTERM while it unwinds, so shutdown is never
    cut in half. Every wait during shutdown has a timeout, so this cannot hang."""

    def __exit__(self, *exc: Any) -> bool | None:
        if threading.current_thread() is not threading.main_thread():
            return super().__exit__(*exc)
        old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            return super().__exit__(*exc)
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)


def converse(producer: Producer, agent: Agent, run: int) -> list[Receipt]:
    """One run of an agent: messages, session data, steps, a state save, a rotation."""
    first, second = sessions_of(run)
    previous = sessions_of(run - 1)[1] if run > 1 else None
    owner = agent.owner
    out = [producer.start_session(owner, first, previous=previous)]
    out.append(producer.set_session_data(owner, first, *agent.data))
    for user, assistant in agent.before:
        out.append(producer.append_message(owner, first, "user", user))
        out.append(producer.append_message(owner, first, "assistant", assistant))
    for action, observation, success in agent.steps:
        out.append(producer.record_step(owner, action, observation, success=success,
                                        session=first))  # fmt: skip
    out.append(producer.save_state(owner, {**agent.state, "runs": run, "session": second}))
    out.append(producer.start_session(owner, second, previous=first))
    for user, assistant in agent.after:
        out.append(producer.append_message(owner, second, "user", user))
        out.append(producer.append_message(owner, second, "assistant", assistant))
    return out


def wait_all(
    reader: Reader, receipts: Sequence[Receipt], workers: WorkerProcesses | None = None
) -> int:
    """Wait for every receipt (read-your-writes); return how many were dead-lettered.
    ``workers`` are the demo's own processes, checked when a wait times out."""
    dead = 0
    for receipt in receipts:
        try:
            result = reader.wait(receipt, timeout=WAIT_S)
        except WaitTimeoutError as e:
            if workers is None:
                raise DemoError(f"{e}; are `memstream worker` processes running?") from e
            workers.check()
            raise DemoError(f"{e}; see the worker logs in {workers.data_dir}") from e
        dead += not result.applied
    return dead


def next_run(reader: Reader) -> int:
    """1 on a fresh directory, else one more than the runs the agents remember."""
    runs = [int((reader.state(a.owner) or {}).get("runs", 0)) for a in AGENTS]
    return max(runs) + 1


def report(reader: Reader, console: Console, agent: Agent, run: int, partitions: int) -> None:
    """Print what the agent remembers, read back from the projections."""
    owner, (first, second) = agent.owner, sessions_of(run)

    def say(text: str) -> None:
        console.print(text, markup=False, highlight=False)

    console.rule(f"{owner}, the {agent.job} (partition {keys.partition(owner, partitions)})")
    say("session chain: " + " <- ".join(reader.session_chain(owner, second)))
    history = reader.history(owner, second)
    say(f"history of {second} ({len(history)} messages):")
    for message in history:
        say(f"  {message['role']:>9}: {message['content']}")
    say(f"state: {json.dumps(reader.state(owner))}")
    say(f"session data of {first}: {json.dumps(reader.session_data(owner, first))}")
    steps = reader.working(owner, last=10)
    say(f"working memory ({len(steps)} recent steps), the last two:")
    for step in steps[-2:]:
        outcome = "ok" if step["success"] else "failed"
        say(f"  {step['action']} -> {step['observation']} ({outcome})")
    sessions = reader.sessions(owner)
    messages = sum(len(reader.history(owner, s["session"], last=1000)) for s in sessions)
    say(f"remembered so far: {len(sessions)} sessions, {messages} messages")


def run_demo(data_dir: Path, console: Console, *, workers: int = 2) -> int:
    """Start Redis and the workers, let the agents talk, print memories and status."""
    data_dir.mkdir(parents=True, exist_ok=True)
    say = console.print
    with ShieldedExitStack() as stack:
        server = stack.enter_context(EmbeddedRedis(data_dir))
        client = stack.enter_context(server.client())
        deployment = init(client)
        say("[bold]memstream demo[/]: three agents remember through Redis Streams")
        say(f"Redis {server.version} on {server.url} (AOF on)", highlight=False)
        say(f"data: {data_dir / 'redis'}", highlight=False)
        say(f"deployment: {deployment.partitions} partitions, projection version "
            f"v{deployment.version}", highlight=False)  # fmt: skip
        procs = stack.enter_context(WorkerProcesses(server.url, data_dir, workers))
        producer = stack.enter_context(Producer.from_url(server.url))
        reader = stack.enter_context(Reader.from_url(server.url))
        pids = ", ".join(f"demo-{i} (pid {p.pid})" for i, p in enumerate(procs.procs, 1))
        say(f"workers: {pids}; logs in {data_dir}/worker-N.log", highlight=False)

        run = next_run(reader)
        started = time.monotonic()
        receipts = [r for agent in AGENTS for r in converse(producer, agent, run)]
        say(f"run {run}: appended {len(receipts)} events: messages, session data, steps,",
            highlight=False)  # fmt: skip
        say("  state saves and a session rotation", highlight=False)
        dead = wait_all(reader, receipts, procs)
        say(f"applied by the workers in {time.monotonic() - started:.2f}s "
            f"(Reader.wait on each receipt); dead-lettered: {dead}", highlight=False)  # fmt: skip
        for agent in AGENTS:
            report(reader, console, agent, run, deployment.partitions)
        console.rule("cold tier")  # archive to data_dir/archive, read across the boundary
        from memstream.tiering.demo import demo_tier

        demo_tier(client, data_dir, console, AGENTS[0].owner)
        console.rule("memstream status")
        render(gather(client), console)
    say("stopped the workers and Redis", highlight=False)
    say(f"the data stays in {data_dir}: run the demo again to continue", highlight=False)
    return 0


def run_agents(client: redis.Redis, url: str, console: Console) -> int:
    """The agents only, against a deployment someone else runs (``demo --agents-only``,
    the compose file's demo producer): one run of appends, waited for through the
    deployment's own workers, then what each agent reads back. ``client`` is the
    command's client, ``url`` the same Redis for the producer and reader."""
    partitions = read_deployment(client).partitions
    with Producer.from_url(url) as producer, Reader.from_url(url) as reader:
        run = next_run(reader)
        started = time.monotonic()
        receipts = [r for agent in AGENTS for r in converse(producer, agent, run)]
        dead = wait_all(reader, receipts)
        console.print(f"run {run}: {len(receipts)} events applied in "
                      f"{time.monotonic() - started:.2f}s; dead-lettered: {dead}",
                      highlight=False)  # fmt: skip
        for agent in AGENTS:
            report(reader, console, agent, run, partitions)
    return 0
