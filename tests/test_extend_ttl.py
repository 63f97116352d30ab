"""``ttl.extended`` / ``memstream extend-ttl``: an active session's keys live ``seconds`` from
the event; convergent in any order (a write arriving after the extension keeps it)."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from memstream.producers import AsyncProducer, Producer, TtlExtended, keys
from memstream.producers.entry import StoredEvent
from memstream.producers.settings import Settings
from memstream.projections.history import History, history_key
from memstream.projections.reader import AsyncReader
from memstream.projections.sessions import Sessions, data_key
from memstream.projections.testing import Deliveries, check_convergence, event_streams
from memstream.projections.testing import with_deliveries as deliveries_for
from memstream.projections.working import Working, working_key
from memstream.workers.cli import main
from memstream.workers.cmd_memory import extend_ttl
from tests.workers_util import running_worker

NOW = (int(time.time()) + 86_400) * 1000
SHORT = Settings(history_ttl_s=20, session_ttl_s=20, working_ttl_s=20)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    case=deliveries_for(
        event_streams(
            owners=("alice", "carol"),
            sessions=("s1", "s2"),
            kinds=("message.appended", "step.recorded", "session.data_set", "ttl.extended"),
            payloads={"ttl.extended": st.builds(TtlExtended, seconds=st.integers(1, 60))},
            start_ms=NOW - 30_000,
        )
    )
)
def test_extension_converges_in_any_order(
    r: redis.Redis, deployed: str, case: tuple[list[StoredEvent], Deliveries]
) -> None:
    events, (order, duplicates, sizes) = case
    check_convergence(
        r, [History(), Sessions(), Working()], events, order=order, duplicates=duplicates,
        batch_sizes=sizes, settings=SHORT, now_ms=NOW,
    )  # fmt: skip


def test_a_message_applied_after_the_extension_keeps_the_extended_life(
    r: redis.Redis, deployed: str
) -> None:
    """The order the floor exists for: extension first, the older message last."""
    from memstream.producers.events_messages import MessageAppended

    message = StoredEvent("alice", f"{NOW - 5000}-0", "message.appended", 1,
                          MessageAppended(role="user", content="hi"), session="s1")  # fmt: skip
    extension = StoredEvent("alice", f"{NOW - 1000}-0", "ttl.extended", 1,
                            TtlExtended(seconds=3600), session="s1")  # fmt: skip
    check_convergence(
        r, [History()], [message, extension], order=[1, 0], duplicates=[], settings=SHORT,
        now_ms=NOW,
    )  # fmt: skip


async def test_cli_extends_each_session_and_working_memory(deployed: str, r: redis.Redis) -> None:
    config = {"history_ttl_s": 60, "session_ttl_s": 60, "working_ttl_s": 2}
    p = keys.partition("alice", 16)
    pk = keys.Projection(p, 1)
    async with (
        AsyncProducer.from_url(deployed) as producer,
        AsyncReader.from_url(deployed, working_ttl_s=2) as reader,
        running_worker(deployed, settings=config),
    ):
        await producer.append_message("alice", "s1", "user", "one")
        await producer.set_session_data("alice", "s2", "lang", "fr")
        step = await producer.record_step("alice", "look", session="s1")
        await reader.wait(step, timeout=10)
        before = r.pexpiretime(history_key(pk, "alice", "s1"))
        assert before <= int(step.log_id.split("-")[0]) + 60_000

        with Producer.from_url(deployed) as sync_producer:
            receipts = extend_ttl(r, sync_producer, "alice", 3600, session=None)
        assert len(receipts) == 2  # one per session
        for receipt in receipts:
            await reader.wait(receipt, timeout=10)
        at = int(receipts[-1].log_id.split("-")[0]) + 3_600_000
        assert r.pexpiretime(history_key(pk, "alice", "s1")) >= at - 5
        assert r.pexpiretime(data_key(pk, "alice", "s2")) >= at - 5
        assert r.pexpiretime(working_key(pk, "alice")) >= at - 5
        # The step's own TTL (2 s) passes: the extension keeps it readable.
        await asyncio.sleep(max(0.0, int(step.log_id.split("-")[0]) / 1000 + 2.1 - time.time()))
        assert [s["action"] for s in await reader.working("alice")] == ["look"]

        code = main(["extend-ttl", "alice", "--session", "s1", "7200", "--redis-url", deployed])
        assert code == 0
        types = [f[b"type"] for _, f in r.xrange(keys.log(p, "alice"))]
        assert types.count(b"ttl.extended") == 3


def test_bad_input_is_rejected(deployed: str) -> None:
    with pytest.raises(ValidationError, match="seconds"):
        TtlExtended(seconds=0)
    assert main(["extend-ttl", "alice", "0", "--redis-url", deployed]) == 2
    assert main(["extend-ttl", "bad owner!", "60", "--redis-url", deployed]) == 1
