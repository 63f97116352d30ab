"""The LangGraph checkpointer against a real redis-server and a real worker process:
LangGraph's public conformance suite (``langgraph-checkpoint-conformance``), and a real
``StateGraph`` that is interrupted and resumed."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, TypedDict

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import BASE_CAPABILITIES, Capability
from langgraph.checkpoint.conformance.report import ProgressCallbacks
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from memstream.integrations.langgraph_checkpoint import MemstreamCheckpointSaver
from tests.workers_util import spawn_worker, stop_worker

OWNER = "app.graph"

NOT_IMPLEMENTED: dict[Capability, str] = {}
"""Every capability the suite does not run, with the reason. Nothing else is skipped: the
test below fails if the report shows any other capability skipped or failed."""


@pytest.fixture
def worker(deployed: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = spawn_worker(deployed, "ckpt-worker", log=tmp_path / "worker.log")
    yield proc
    assert stop_worker(proc) == 0, (tmp_path / "worker.log").read_text()


async def test_conformance_suite_passes(deployed: str, worker: object) -> None:
    @checkpointer_test(name="MemstreamCheckpointSaver")
    async def memstream_saver() -> AsyncIterator[MemstreamCheckpointSaver]:
        saver = MemstreamCheckpointSaver.from_url(deployed, OWNER)
        yield saver
        await saver.aclose()

    failures: list[str] = []

    def record(cap: str, test: str, passed: bool, error: str | None) -> None:
        if not passed:
            failures.append(f"{cap}/{test}:\n{error}")

    report = await validate(memstream_saver, progress=ProgressCallbacks(on_test_result=record))
    assert failures == [], "\n".join(failures)
    assert report.passed_all_base() and report.passed_all()
    ran = {name for name, r in report.results.items() if r.detected and r.passed}
    skipped = {name for name, r in report.results.items() if not r.detected}
    assert {c.value for c in BASE_CAPABILITIES} <= ran
    assert skipped == {c.value for c in NOT_IMPLEMENTED}
    assert sum(r.tests_passed for r in report.results.values()) >= 80


class Trip(TypedDict):
    city: str
    approved: str
    log: list[str]


def plan(state: Trip) -> dict[str, Any]:
    return {"log": [*state["log"], f"planned {state['city']}"]}


def approve(state: Trip) -> dict[str, Any]:
    answer = interrupt({"question": f"book {state['city']}?"})
    return {"approved": answer, "log": [*state["log"], f"answer {answer}"]}


def book(state: Trip) -> dict[str, Any]:
    return {"log": [*state["log"], "booked" if state["approved"] == "yes" else "dropped"]}


def _graph(saver: MemstreamCheckpointSaver) -> Any:
    builder = StateGraph(Trip)
    builder.add_node("plan", plan)
    builder.add_node("approve", approve)
    builder.add_node("book", book)
    builder.add_edge(START, "plan")
    builder.add_edge("plan", "approve")
    builder.add_edge("approve", "book")
    builder.add_edge("book", END)
    return builder.compile(checkpointer=saver)


def test_state_graph_interrupts_and_resumes(deployed: str, worker: object) -> None:
    saver = MemstreamCheckpointSaver.from_url(deployed, OWNER)
    config: Any = {"configurable": {"thread_id": "trip/1 to Sintra ✈"}}
    try:
        graph = _graph(saver)
        out = graph.invoke({"city": "Sintra", "approved": "", "log": []}, config)
        assert out["__interrupt__"][0].value == {"question": "book Sintra?"}
        state = graph.get_state(config)
        assert state.next == ("approve",) and state.values["log"] == ["planned Sintra"]
        # A new saver (another process, say) resumes the thread from what workers folded.
        other = MemstreamCheckpointSaver.from_url(deployed, OWNER)
        try:
            resumed = _graph(other)
            out = resumed.invoke(Command(resume="yes"), config)
            history = list(resumed.get_state_history(config))  # it reads its own writes
        finally:
            other.close()
        assert out["log"] == ["planned Sintra", "answer yes", "booked"]
        assert [s.next for s in history][:2] == [(), ("book",)]
        steps = [s.metadata["step"] for s in history if s.metadata is not None]
        assert steps == sorted(steps, reverse=True) and len(history) >= 4
        saver.delete_thread("trip/1 to Sintra ✈")
        assert saver.get_tuple(config) is None
    finally:
        saver.close()


async def test_async_graph_interrupts_and_resumes(deployed: str, worker: object) -> None:
    saver = MemstreamCheckpointSaver.from_url(deployed, OWNER)
    config: Any = {"configurable": {"thread_id": "async-trip"}}
    try:
        graph = _graph(saver)
        out = await graph.ainvoke({"city": "Porto", "approved": "", "log": []}, config)
        assert "__interrupt__" in out
        out = await graph.ainvoke(Command(resume="no"), config)
        assert out["log"] == ["planned Porto", "answer no", "dropped"]
        listed = [t async for t in saver.alist(config, limit=2)]
        assert len(listed) == 2 and listed[0].checkpoint["channel_values"]["log"][-1] == "dropped"
    finally:
        await saver.aclose()
