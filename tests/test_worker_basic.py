from __future__ import annotations

import pytest
import redis

from memstream.producers import AsyncProducer, NotInitialisedError, Settings, keys
from memstream.projections.reader import AsyncReader
from memstream.workers.options import WorkerOptions
from memstream.workers.worker import REQUIRED_LIBRARY, Worker
from tests.workers_util import running_worker


async def test_worker_folds_history_state_sessions_working(deployed: str, r: redis.Redis) -> None:
    async with (
        AsyncProducer.from_url(deployed) as producer,
        AsyncReader.from_url(deployed) as reader,
        running_worker(deployed),
    ):
        await producer.start_session("alice", "s1")
        for i in range(5):
            await producer.append_message("alice", "s1", "user", f"m{i}")
        await producer.save_state("alice", {"v": 1})
        await producer.save_state("alice", {"v": 2})
        await producer.set_session_data("alice", "s1", "lang", "fr")
        await producer.start_session("alice", "s2", previous="s1")
        await producer.record_step("alice", "look", "saw a door", session="s2")
        last = await producer.append_message("alice", "s2", "user", "hello")
        result = await reader.wait(last, timeout=10)
        assert result.applied
        history = await reader.history("alice", "s1", last=3)
        assert [m["content"] for m in history] == ["m2", "m3", "m4"]
        assert await reader.state("alice") == {"v": 2}
        assert await reader.session_data("alice", "s1") == {"lang": "fr"}
        assert await reader.session_chain("alice", "s2") == ["s2", "s1"]
        sessions = await reader.sessions("alice")
        assert [s["session"] for s in sessions] == ["s2", "s1"]
        steps = await reader.working("alice")
        assert [s["action"] for s in steps] == ["look"]
    p = keys.partition("alice", 16)
    assert r.xpending(keys.feed(p), "v1")["pending"] == 0


async def test_worker_refuses_to_start_on_functions_older_than_it(
    deployed: str, r: redis.Redis
) -> None:
    # A server initialised by an older release lacks the fetch library: the worker must
    # say so at start, not fail on its first batch.
    r.function_delete(REQUIRED_LIBRARY)
    worker = Worker.from_settings(Settings.from_url(deployed), WorkerOptions(consumer="old"))
    try:
        with pytest.raises(NotInitialisedError, match="memstream init"):
            await worker.run()
    finally:
        await worker.client.aclose()
