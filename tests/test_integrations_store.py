"""The LangGraph store adapter: its projection converges, forget removes it, and a real
StateGraph reads and writes it against a real server and a real worker process."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypedDict

import pytest
import redis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from langgraph.graph import END, START, StateGraph
from langgraph.store.base import BaseStore, GetOp, ListNamespacesOp, PutOp, SearchOp

from memstream.integrations.langgraph_store import MemstreamStore
from memstream.producers import keys
from memstream.producers.entry import StoredEvent
from memstream.producers.events_store import StoreDeleted, StorePut, StoreRefreshed
from memstream.projections.store import Store
from memstream.projections.testing import check_convergence, event_streams, with_deliveries
from memstream.workers.forget import forget_owner
from tests.workers_util import spawn_worker, stop_worker

OWNER = "app.lg"
NOW = (int(time.time()) + 86_400) * 1000
NS = st.sampled_from([["u1"], ["u1", "mem"], ["u2", "mem"]])
KEY = st.sampled_from(["k1", "k2"])
PAYLOADS: dict[str, Any] = {
    "store.put": st.builds(
        StorePut, namespace=NS, key=KEY,
        value=st.fixed_dictionaries({"text": st.sampled_from(["redis cache", "trains", ""])}),
        index=st.just(["$"]) | st.just(False),
        ttl_s=st.none() | st.sampled_from([5.0, 3600.0])),
    "store.deleted": st.builds(StoreDeleted, namespace=NS, key=KEY),
    "store.refreshed": st.builds(
        StoreRefreshed, namespace=NS, key=KEY, ttl_s=st.sampled_from([5.0, 60.0]),
        of=st.sampled_from([f"{NOW - 10_000:013d}-0000000000", f"{NOW:013d}-0000000001"])),
}  # fmt: skip


def _put_delete_put() -> Any:
    """A put, a delete and a re-put of one item, then a refresh of the first version,
    delivered newest first with a duplicate: the creation time must restart at the re-put."""
    ns, t = ["u1"], NOW - 10_000
    made = [
        StorePut(namespace=ns, key="k1", value={"text": "a"}, ttl_s=5.0),
        StoreDeleted(namespace=ns, key="k1"),
        StorePut(namespace=ns, key="k1", value={"text": "b"}),
        StoreRefreshed(namespace=ns, key="k1", of=f"{t:013d}-0000000000", ttl_s=60.0),
    ]
    events = [StoredEvent("alice", f"{t + i}-0", e.TYPE, e.VERSION, e) for i, e in enumerate(made)]
    return events, ([3, 2, 1, 0], [1], [1])


@example(case=_put_delete_put())
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(case=with_deliveries(event_streams(
    owners=("alice",), kinds=tuple(PAYLOADS), payloads=PAYLOADS, min_size=2, max_size=12,
    start_ms=NOW - 20_000)))  # fmt: skip
def test_store_projection_converges(r: redis.Redis, deployed: str, case: Any) -> None:
    events, (order, duplicates, sizes) = case
    check_convergence(r, [Store()], events, order=order, duplicates=duplicates,
                      batch_sizes=sizes, now_ms=NOW)  # fmt: skip


@pytest.fixture
def worker(deployed: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = spawn_worker(deployed, "lg-worker", log=tmp_path / "worker.log")
    yield proc
    assert stop_worker(proc) == 0, (tmp_path / "worker.log").read_text()


@pytest.fixture
def store(deployed: str, worker: object) -> Iterator[MemstreamStore]:
    made = MemstreamStore.from_url(deployed, OWNER)
    yield made
    made.close()


def test_put_get_update_delete(store: MemstreamStore) -> None:
    store.put(("u1", "mem"), "a", {"text": "likes trains", "n": 1})
    first = store.get(("u1", "mem"), "a")
    assert first is not None and first.value == {"text": "likes trains", "n": 1}
    assert first.namespace == ("u1", "mem") and first.created_at == first.updated_at
    time.sleep(0.01)
    store.put(("u1", "mem"), "a", {"text": "likes boats", "n": 2})
    second = store.get(("u1", "mem"), "a")
    assert second is not None and second.value["n"] == 2
    assert second.created_at == first.created_at and second.updated_at > first.updated_at
    store.delete(("u1", "mem"), "a")
    assert store.get(("u1", "mem"), "a") is None
    store.put(("u1", "mem"), "a", {"text": "back"})
    again = store.get(("u1", "mem"), "a")
    assert again is not None and again.created_at > first.created_at  # a new item


def test_search_filters_keywords_and_namespaces(store: MemstreamStore) -> None:
    store.put(("u1", "mem"), "t", {"text": "Takes the train to Sintra", "stars": 5})
    store.put(("u1", "mem"), "c", {"text": "Redis caches everything", "stars": 3})
    store.put(("u1", "prefs"), "p", {"text": "trains at night", "stars": 1}, index=False)
    store.put(("u2", "mem"), "x", {"text": "train spotting", "stars": 4})
    got = store.search(("u1",), query="trains")
    assert [i.key for i in got] == ["t"]  # "p" is not indexed; u2 is outside the prefix
    assert got[0].score is not None and got[0].score > 0
    assert {i.key for i in store.search(("u1",), filter={"stars": {"$gte": 3}})} == {"t", "c"}
    assert [i.key for i in store.search(("u1", "mem"), filter={"stars": 3})] == ["c"]
    assert len(store.search((), limit=2)) == 2
    assert store.list_namespaces() == [("u1", "mem"), ("u1", "prefs"), ("u2", "mem")]
    assert store.list_namespaces(prefix=("u1",)) == [("u1", "mem"), ("u1", "prefs")]
    assert store.list_namespaces(suffix=("mem",), max_depth=1) == [("u1",), ("u2",)]


async def test_abatch_reads_see_earlier_writes(store: MemstreamStore) -> None:
    ns = ("u3",)
    results = await store.abatch([
        PutOp(ns, "a", {"v": 1}), PutOp(ns, "b", {"v": 2}), GetOp(ns, "a"),
        PutOp(ns, "a", None), GetOp(ns, "a"), SearchOp(ns), ListNamespacesOp(),
    ])  # fmt: skip
    assert results[:2] == [None, None]
    assert results[2] is not None and results[2].value == {"v": 1}
    assert results[4] is None
    assert [i.key for i in results[5]] == ["b"]
    assert results[6] == [("u3",)]
    await store.aclose()


def test_ttl_expiry_and_refresh_on_read(deployed: str, worker: object) -> None:
    store = MemstreamStore.from_url(deployed, OWNER, ttl={"default_ttl": 0.05})  # 3 s
    try:
        store.put(("t",), "kept", {"v": 1})
        store.put(("t",), "left", {"v": 2})
        store.put(("t",), "forever", {"v": 3}, ttl=None)
        time.sleep(1.8)
        assert store.get(("t",), "kept") is not None  # refresh_on_read defaults to on
        assert store.get(("t",), "left", refresh_ttl=False) is not None
        time.sleep(1.8)
        assert store.get(("t",), "left", refresh_ttl=False) is None
        assert store.get(("t",), "kept", refresh_ttl=False) is not None
        assert {i.key for i in store.search(("t",))} == {"kept", "forever"}
    finally:
        store.close()


class Chat(TypedDict):
    user: str
    said: str
    reply: str


def remember(state: Chat, *, store: BaseStore) -> dict[str, Any]:
    store.put((state["user"], "facts"), str(len(state["said"])), {"text": state["said"]})
    return {}


def answer(state: Chat, *, store: BaseStore) -> dict[str, Any]:
    hits = store.search((state["user"], "facts"), query="train")
    return {"reply": "; ".join(h.value["text"] for h in hits) or "nothing yet"}


def test_state_graph_reads_and_writes_the_store(deployed: str, worker: object) -> None:
    builder = StateGraph(Chat)
    builder.add_node("remember", remember)
    builder.add_node("answer", answer)
    builder.add_edge(START, "remember")
    builder.add_edge("remember", "answer")
    builder.add_edge("answer", END)
    store = MemstreamStore.from_url(deployed, OWNER)
    try:
        graph = builder.compile(store=store)
        out = graph.invoke({"user": "ada", "said": "I take the train", "reply": ""})
        assert out["reply"] == "I take the train"
        out = graph.invoke({"user": "ada", "said": "I like tea", "reply": ""})
        assert out["reply"] == "I take the train"  # found by keyword, from the first run
        other = MemstreamStore.from_url(deployed, OWNER)
        hit = other.get(("ada", "facts"), str(len("I like tea")))
        assert hit is not None and hit.value == {"text": "I like tea"}
        other.close()
        # The same store from async callers on two event loops, and the async graph API.
        asyncio.run(store.aput(("ada", "facts"), "x", {"text": "the night train"}))
        found = asyncio.run(store.asearch(("ada",), query="train"))
        assert {i.key for i in found} == {"x", str(len("I take the train"))}
        out = asyncio.run(graph.ainvoke({"user": "ada", "said": "hello", "reply": ""}))
        assert "the night train" in out["reply"]
    finally:
        store.close()


def test_forget_removes_the_store(r: redis.Redis, store: MemstreamStore) -> None:
    store.put(("u1",), "a", {"text": "secret"})
    assert store.get(("u1",), "a") is not None
    pattern = keys.owner_pattern(keys.partition(OWNER, 16), OWNER)
    assert any(b":st" in k for k in r.scan_iter(match=pattern))
    forget_owner(r, OWNER)
    assert [k for k in r.scan_iter(match=pattern) if b":st" in k] == []
    assert store.get(("u1",), "a") is None


def test_a_key_the_event_refuses_is_our_error(deployed: str) -> None:
    from memstream.producers.errors import InvalidInputError

    store = MemstreamStore.from_url(deployed, OWNER)
    try:
        with pytest.raises(InvalidInputError, match="key"):
            store.put(("u1",), "line\nbreak", {"v": 1})
    finally:
        store.close()
