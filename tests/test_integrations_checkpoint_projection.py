"""The checkpoints projection: it converges under any delivery order, replay rebuilds it,
forget removes it, and the saver refuses what it must (oversized values, pickles, names
that could forge a key part)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from memstream.integrations.langgraph_checkpoint import MemstreamCheckpointSaver
from memstream.producers import Settings, keys
from memstream.producers.entry import StoredEvent
from memstream.producers.errors import ConfigError, InvalidInputError
from memstream.producers.events_checkpoint import (
    ChannelBlob,
    CheckpointPut,
    CheckpointRef,
    CheckpointsRemoved,
    CheckpointThreadDeleted,
    CheckpointWrites,
    PendingWrite,
    Typed,
)
from memstream.projections.checkpoints import Checkpoints
from memstream.projections.testing import check_convergence, event_streams, with_deliveries
from memstream.workers.forget import forget_owner
from memstream.workers.replay import replay_all
from memstream.workers.replay_owner import replay_owner
from tests.workers_util import spawn_worker, stop_worker

OWNER = "app.ckpt"
NOW = (int(time.time()) + 86_400) * 1000
THREAD = st.sampled_from(["t1", "thread two ✓"])
NS = st.sampled_from(["", "child:1"])
CID = st.sampled_from(["1ef-a", "1ef-b", "1ef-c"])
VALUE = st.builds(Typed, type=st.just("msgpack"), data=st.sampled_from([b"\x01", b"\x02"]))
PAYLOADS: dict[str, Any] = {
    "checkpoint.put": st.builds(
        CheckpointPut, thread_id=THREAD, checkpoint_ns=NS, checkpoint_id=CID,
        parent_id=st.none() | CID, checkpoint=VALUE, metadata=VALUE,
        versions=st.just({"a": "1", "b": "2"}),
        blobs=st.lists(st.builds(ChannelBlob, channel=st.sampled_from(["a", "b"]),
                                 version=st.sampled_from(["1", "2"]), type=st.just("msgpack"),
                                 data=st.sampled_from([b"x", b"y"])), max_size=2)),
    "checkpoint.writes": st.builds(
        CheckpointWrites, thread_id=THREAD, checkpoint_ns=NS, checkpoint_id=CID,
        task_id=st.sampled_from(["task1", "task2"]),
        writes=st.lists(st.builds(PendingWrite, channel=st.sampled_from(["a", "__error__"]),
                                  idx=st.sampled_from([0, -1]), type=st.just("msgpack"),
                                  data=st.sampled_from([b"w", b"v"])), min_size=1, max_size=2)),
    "checkpoint.thread_deleted": st.builds(CheckpointThreadDeleted, thread_id=THREAD),
    "checkpoint.removed": st.builds(
        CheckpointsRemoved, thread_id=THREAD,
        checkpoints=st.lists(st.builds(CheckpointRef, checkpoint_ns=NS, checkpoint_id=CID,
                                       writes=st.just(["task1\x1f0"])), min_size=1, max_size=2)),
}  # fmt: skip


def _put_delete_put() -> Any:
    """Put, delete, put again on one thread, delivered newest first with a duplicate: the
    second put must survive the delete, the first must not come back."""
    t = NOW - 10_000
    blob = ChannelBlob(channel="a", version="1", type="msgpack", data=b"x")
    put = CheckpointPut(thread_id="t1", checkpoint_id="1ef-a", checkpoint=Typed(type="msgpack",
                        data=b"\x01"), metadata=Typed(type="msgpack", data=b"\x02"),
                        versions={"a": "1"}, blobs=[blob])  # fmt: skip
    made = [
        put,
        CheckpointThreadDeleted(thread_id="t1"),
        put.model_copy(update={"checkpoint_id": "1ef-b"}),
    ]
    events = [StoredEvent("alice", f"{t + i}-0", e.TYPE, e.VERSION, e) for i, e in enumerate(made)]
    return events, ([2, 1, 0], [0], [1])


@example(case=_put_delete_put())
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(case=with_deliveries(event_streams(
    owners=("alice",), kinds=tuple(PAYLOADS), payloads=PAYLOADS, min_size=2, max_size=12,
    start_ms=NOW - 20_000)))  # fmt: skip
def test_checkpoints_projection_converges(r: redis.Redis, deployed: str, case: Any) -> None:
    events, (order, duplicates, sizes) = case
    check_convergence(r, [Checkpoints()], events, order=order, duplicates=duplicates,
                      batch_sizes=sizes, now_ms=NOW)  # fmt: skip


@pytest.fixture
def worker(deployed: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = spawn_worker(deployed, "ckpt-proj-worker", log=tmp_path / "worker.log")
    yield proc
    assert stop_worker(proc) == 0, (tmp_path / "worker.log").read_text()


@pytest.fixture
def saver(deployed: str) -> Iterator[MemstreamCheckpointSaver]:
    made = MemstreamCheckpointSaver.from_url(deployed, OWNER)
    yield made
    made.close()


def _checkpoint(cid: str, values: dict[str, Any], version: int = 1) -> Any:
    return {"v": 1, "id": cid, "ts": "2026-01-01T00:00:00+00:00", "channel_values": values,
            "channel_versions": {k: version for k in values}, "versions_seen": {},
            "pending_sends": []}  # fmt: skip


def _config(thread: str, cid: str | None = None, ns: str = "") -> Any:
    conf = {"thread_id": thread, "checkpoint_ns": ns}
    return {"configurable": conf if cid is None else {**conf, "checkpoint_id": cid}}


def _populate(saver: MemstreamCheckpointSaver) -> None:
    for thread in ("keep", "gone", "again"):
        first = saver.put(_config(thread), _checkpoint("1ef-1", {"msgs": ["hi"]}), {"step": 0},
                          {"msgs": 1})  # fmt: skip
        saver.put_writes(first, [("msgs", ["hi", "there"])], "task-1")
        saver.put(first, _checkpoint("1ef-2", {"msgs": ["hi", "there"]}), {"step": 1}, {"msgs": 1})
    saver.delete_thread("gone")
    saver.delete_thread("again")
    saver.put(_config("again"), _checkpoint("1ef-3", {"n": 3}), {"step": 0}, {"n": 1})


def _cp_keys(r: redis.Redis, version: int) -> dict[str, Any]:
    """Every checkpoints key of ``version``, version-less name -> its value."""
    out: dict[str, Any] = {}
    for raw in r.scan_iter(match=keys.version_pattern(version), count=1000):
        key = raw.decode()
        p, _ = keys.version_of_key(key)
        tail = key[len(keys.version_prefix(p, version)) :]
        if not tail.startswith("cp_"):
            continue
        kind = r.type(raw)
        value: Any = r.hgetall(raw) if kind == b"hash" else r.zrange(raw, 0, -1, withscores=True)
        out[tail] = value
    return out


def test_replay_rebuilds_and_forget_removes(
    r: redis.Redis, deployed: str, worker: object, saver: MemstreamCheckpointSaver
) -> None:
    _populate(saver)
    kept = saver.get_tuple(_config("keep"))
    assert kept is not None and kept.checkpoint["channel_values"] == {"msgs": ["hi", "there"]}
    assert saver.get_tuple(_config("gone")) is None
    assert [t.checkpoint["id"] for t in saver.list(_config("again"))] == ["1ef-3"]
    assert sorted(t.config["configurable"]["thread_id"] for t in saver.list(None)) == [
        "again", "keep", "keep"]  # fmt: skip
    before = _cp_keys(r, 1)
    assert {k.split(":")[0] for k in before} == set(Checkpoints.key_names)

    replay_all(r, Settings.from_url(deployed), catchup_timeout_s=10, grace_s=0.0)
    assert _cp_keys(r, 2) == before
    r.delete(*[k for k in r.scan_iter(match=keys.version_pattern(2)) if b":cp_h:" in k])
    replay_owner(r, OWNER, Settings.from_url(deployed))  # rebuilds the lost lookups in place
    assert _cp_keys(r, 2) == before
    rebuilt = MemstreamCheckpointSaver.from_url(deployed, OWNER)
    try:
        assert rebuilt.get_tuple(_config("keep")) == kept
        assert rebuilt.get_tuple(_config("gone")) is None
    finally:
        rebuilt.close()

    forget_owner(r, OWNER)
    assert _cp_keys(r, 2) == {}
    assert saver.get_tuple(_config("keep")) is None


def test_first_write_of_a_thread_is_read_back_at_once(
    deployed: str, worker: object, saver: MemstreamCheckpointSaver
) -> None:
    stored = saver.put(_config("ryw"), _checkpoint("1ef-9", {"x": 1}), {"step": 0}, {"x": 1})
    got = saver.get_tuple(stored)  # waits on the put's receipt: no sleep, no retry
    assert got is not None and got.checkpoint["channel_values"] == {"x": 1}


def test_an_oversized_checkpoint_names_its_channel(deployed: str) -> None:
    saver = MemstreamCheckpointSaver.from_url(deployed, OWNER)
    try:
        big = {"small": "s", "messages": "x" * 1_200_000}
        with pytest.raises(InvalidInputError, match=r"channel_values\['messages'\]") as caught:
            saver.put(_config("big"), _checkpoint("1ef-1", big), {}, {"small": 1, "messages": 1})
        assert "max_event_bytes" in str(caught.value)
        stored = _config("big", "1ef-1")
        with pytest.raises(InvalidInputError, match=r"writes\['answer'\]"):
            saver.put_writes(stored, [("note", "n"), ("answer", "y" * 1_200_000)], "task-1")
    finally:
        saver.close()


def test_names_that_could_forge_a_key_part_are_refused(deployed: str) -> None:
    saver = MemstreamCheckpointSaver.from_url(deployed, OWNER)
    try:
        with pytest.raises(InvalidInputError, match="checkpoint_ns"):
            saver.put(_config("t", ns="a\x1fb"), _checkpoint("1ef-1", {}), {}, {})
        with pytest.raises(InvalidInputError, match="thread_id"):
            saver.put({"configurable": {"checkpoint_ns": ""}}, _checkpoint("1ef-1", {}), {}, {})
    finally:
        saver.close()


def test_no_pickle_gets_in_or_out() -> None:
    with pytest.raises(ConfigError, match="pickle"):
        MemstreamCheckpointSaver("app", serde=JsonPlusSerializer(pickle_fallback=True))
    with pytest.raises(ValueError, match="pickle"):
        Typed(type="pickle", data=b"\x80\x04")


def test_pages_skip_deleted_and_removed_checkpoints(
    deployed: str, worker: object, saver: MemstreamCheckpointSaver
) -> None:
    small = MemstreamCheckpointSaver.from_url(deployed, OWNER, page=2)
    try:
        parent = _config("paged")
        for i in range(5):
            meta: Any = {"step": i, "even": i % 2 == 0}  # a custom key, as graphs add them
            parent = small.put(parent, _checkpoint(f"1ef-{5 + i}", {"i": i}), meta, {"i": 1})
        got = [t.checkpoint["id"] for t in small.list(_config("paged"), limit=3)]
        assert got == ["1ef-9", "1ef-8", "1ef-7"]
        evens = small.list(_config("paged"), filter={"even": True}, before=_config("p", "1ef-9"))
        assert [t.metadata["step"] for t in evens] == [2, 0]
        only = list(small.list(_config("paged", "1ef-6")))
        assert [t.checkpoint["id"] for t in only] == ["1ef-6"]
        # Deleted, then used again with an id older than every deleted one: the newest
        # read pages past the dead refs.
        small.delete_thread("paged")
        small.put(_config("paged"), _checkpoint("1ef-0", {"i": 0}), {"step": 0}, {"i": 1})
        latest = small.get_tuple(_config("paged"))
        assert latest is not None and latest.checkpoint["id"] == "1ef-0"
        assert [t.checkpoint["id"] for t in small.list(_config("paged"))] == ["1ef-0"]
        # keep_latest keeps the newest of each namespace with its value and its writes.
        first = small.put(_config("pr"), _checkpoint("1ef-1", {"v": "a"}), {}, {"v": 1})
        last = small.put(first, _checkpoint("1ef-2", {"v": "b"}, version=2), {}, {"v": 2})
        small.put_writes(last, [("v", "c")], "task-9")
        small.put(_config("pr", ns="child:1"), _checkpoint("1ef-3", {}), {}, {})
        small.prune(["pr"])
        left = [(t.config["configurable"]["checkpoint_ns"], t.checkpoint["id"])
                for t in small.list({"configurable": {"thread_id": "pr"}})]  # fmt: skip
        assert left == [("child:1", "1ef-3"), ("", "1ef-2")]  # newest id first
        kept = small.get_tuple(_config("pr"))
        assert kept is not None and kept.checkpoint["id"] == "1ef-2"
        assert kept.checkpoint["channel_values"] == {"v": "b"}
        assert kept.pending_writes == [("task-9", "v", "c")]
        assert small.get_tuple(_config("pr", "1ef-1")) is None
    finally:
        small.close()
