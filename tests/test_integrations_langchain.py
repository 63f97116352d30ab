"""The LangChain chat history adapter against a real server and a real worker process."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.prompt_values import PromptValue
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables.history import RunnableWithMessageHistory

from memstream.integrations.langchain import MemstreamChatMessageHistory
from memstream.projections.wait import WaitTimeoutError
from tests.workers_util import spawn_worker, stop_worker

OWNER = "agent.lc"
RICH: list[BaseMessage] = [
    SystemMessage("You are terse.", id="m0"),
    HumanMessage(
        ["look:", {"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
        id="m1",
        name="ada",
    ),
    AIMessage(
        "",
        id="m2",
        tool_calls=[{"name": "weather", "args": {"city": "Lisbon"}, "id": "c1"}],
        additional_kwargs={"refusal": None, "model": "fake-1"},
        response_metadata={"finish_reason": "tool_calls"},
        usage_metadata={"input_tokens": 3, "output_tokens": 5, "total_tokens": 8},
    ),
    ToolMessage("18C", tool_call_id="c1", id="m3", status="error", artifact={"raw": [1, 2]}),
    FunctionMessage("42", name="answer", id="m4"),
    ChatMessage("hmm", role="critic", id="m5"),
    AIMessage("It is 18C.", id="m6"),
]


@pytest.fixture
def worker(deployed: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = spawn_worker(deployed, "lc-worker", log=tmp_path / "worker.log")
    yield proc
    assert stop_worker(proc) == 0, (tmp_path / "worker.log").read_text()


def test_messages_round_trip_one_to_one(deployed: str, worker: object) -> None:
    history = MemstreamChatMessageHistory.from_url(deployed, OWNER, "s1")
    try:
        history.add_messages(RICH)
        assert history.messages == RICH  # read-your-writes: waits for the worker
        again = MemstreamChatMessageHistory.from_url(deployed, OWNER, "s1")
        assert [type(m) for m in again.messages] == [type(m) for m in RICH]
        again.close()
        history.clear()
        assert history.messages == []
        history.add_messages([HumanMessage("after the clear")])
        assert history.messages == [HumanMessage("after the clear")]
        other = MemstreamChatMessageHistory.from_url(deployed, OWNER, "other")
        assert other.messages == []
        other.close()
    finally:
        history.close()


def test_reads_page_past_the_projection_cap(deployed: str, worker: object) -> None:
    # history_cap is 100 by default: the first page comes from the read model, the older
    # ones from the log, and the whole session reads back in order.
    history = MemstreamChatMessageHistory.from_url(deployed, OWNER, "long")
    sent = [HumanMessage(f"m{i}") for i in range(250)]
    try:
        history.add_messages(sent)
        assert history.messages == sent
        newest = MemstreamChatMessageHistory.from_url(deployed, OWNER, "long", max_messages=7)
        assert newest.messages == sent[-7:]
        newest.close()
    finally:
        history.close()


async def test_async_variants(deployed: str, worker: object) -> None:
    history = MemstreamChatMessageHistory.from_url(deployed, OWNER, "s2")
    try:
        await history.aadd_messages(RICH[:3])
        await history.aadd_messages(RICH[3:])
        assert await history.aget_messages() == RICH
        await history.aclear()
        assert await history.aget_messages() == []
    finally:
        await history.aclose()


# langchain-core 1.x deprecates RunnableWithMessageHistory (pointing at LangGraph); the
# issue asks for it, and it is still how LangChain chains use a chat history.
@pytest.mark.filterwarnings("ignore:RunnableWithMessageHistory is deprecated")
def test_runnable_with_message_history(deployed: str, worker: object) -> None:
    model = GenericFakeChatModel(messages=iter([AIMessage("Hi Ada."), AIMessage("You are Ada.")]))
    seen: list[list[BaseMessage]] = []

    def spy(prompt: PromptValue) -> PromptValue:
        seen.append(list(prompt.to_messages()))
        return prompt

    prompt = ChatPromptTemplate.from_messages(
        [("system", "Be brief."), MessagesPlaceholder("history"), ("human", "{question}")]
    )
    stores: dict[str, MemstreamChatMessageHistory] = {}

    def get_history(session_id: str) -> BaseChatMessageHistory:
        if session_id not in stores:
            stores[session_id] = MemstreamChatMessageHistory.from_url(deployed, OWNER, session_id)
        return stores[session_id]

    chain = RunnableWithMessageHistory(
        prompt | spy | model,
        get_history,
        input_messages_key="question",
        history_messages_key="history",
    )
    config = {"configurable": {"session_id": "chat1"}}
    try:
        assert chain.invoke({"question": "I am Ada."}, config).content == "Hi Ada."
        assert chain.invoke({"question": "Who am I?"}, config).content == "You are Ada."
        # The second call's prompt carried the first exchange, read back from memstream.
        assert [m.content for m in seen[1]] == ["Be brief.", "I am Ada.", "Hi Ada.", "Who am I?"]
        # The history the chain wrote to reads its own writes (the last exchange too).
        assert [(m.type, m.content) for m in stores["chat1"].messages] == [
            ("human", "I am Ada."), ("ai", "Hi Ada."), ("human", "Who am I?"),
            ("ai", "You are Ada."),
        ]  # fmt: skip
    finally:
        for store in stores.values():
            store.close()


def test_read_without_a_worker_times_out_as_documented(deployed: str) -> None:
    history = MemstreamChatMessageHistory.from_url(deployed, OWNER, "s3", wait_timeout=0.3)
    try:
        history.add_messages([HumanMessage("nobody applies this")])
        with pytest.raises(WaitTimeoutError, match="not applied after"):
            _ = history.messages
    finally:
        history.close()


def test_a_message_the_event_refuses_names_the_field() -> None:
    from memstream.integrations.lc_messages import to_event
    from memstream.producers.errors import InvalidInputError

    bad = AIMessage("", tool_calls=[{"name": "", "args": {}, "id": "c1"}])
    with pytest.raises(InvalidInputError, match="tool_calls"):
        to_event(bad)
