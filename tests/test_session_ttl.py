"""TTL chosen by the application, per session (docs/ttl.md): set at ``session.started`` or
by ``session.ttl_set``, sliding with activity, able to shorten, convergent, replay-safe."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memstream.producers import InvalidInputError, Producer, Receipt, Settings, keys
from memstream.producers.entry import StoredEvent
from memstream.producers.events import Event, SessionDataSet, SessionStarted, SessionTtlSet
from memstream.producers.events_live import TtlExtended
from memstream.producers.events_messages import HistoryCleared, MessageAppended
from memstream.projections.base import ApplyContext
from memstream.projections.history import History
from memstream.projections.ops import Writes, write_command
from memstream.projections.reader import AsyncReader
from memstream.projections.sessions import Sessions
from memstream.projections.testing import check_convergence
from memstream.workers.replay import replay_all
from tests.timeline import timeline, user
from tests.workers_util import running_worker

OWNER = "agent.ada"
P = keys.partition(OWNER, 16)


def _events(now: int) -> list[StoredEvent]:
    """Two sessions: s1 chooses 60 s at its start, then 30 s; s2 chooses never, then the
    default again, and is cleared. Event times spread over the last 50 s."""

    at = timeline(OWNER, now - 50_000)
    return [
        at(0, SessionStarted(ttl_s=60), "s1", 2),
        at(1_000, user("a"), "s1"),
        at(2_000, user("b"), "s1"),
        at(3_000, SessionTtlSet(ttl_s=30), "s1"),
        at(40_000, user("c"), "s1"),
        at(500, user("x"), "s2"),
        at(1_500, SessionTtlSet(ttl_s=0), "s2"),
        at(2_500, user("y"), "s2"),
        at(4_000, SessionTtlSet(ttl_s=None), "s2"),
        at(4_500, HistoryCleared(), "s2"),
        at(45_000, user("z"), "s2"),
    ]


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    order=st.permutations(range(11)),
    duplicates=st.lists(st.integers(0, 10), max_size=3),
    batch=st.sampled_from([[1], [3], [2, 5]]),
    default=st.sampled_from([None, 20, 3600]),
)
def test_session_ttls_converge_in_any_order(
    r: redis.Redis,
    deployed: str,
    order: list[int],
    duplicates: list[int],
    batch: list[int],
    default: int | None,
) -> None:
    # The harness's clock runs a day ahead, so no expiry computed here passes mid-check.
    now = (int(time.time()) + 86_400) * 1000
    check_convergence(
        r, [History()], _events(now), order=order, duplicates=duplicates, batch_sizes=batch,
        settings=Settings(history_ttl_s=default), now_ms=now,
    )  # fmt: skip


def _ms(receipt: Receipt) -> int:
    return int(receipt.log_id.split("-")[0])


def _expiry_ms(r: redis.Redis, session: str) -> int:
    return int(r.pexpiretime(keys.Projection(P, 1).key("hist", OWNER, session)))


async def test_a_session_ttl_shortens_slides_and_expires(deployed: str, r: redis.Redis) -> None:
    with Producer.from_url(deployed) as producer:
        async with running_worker(deployed, settings={"history_ttl_s": 3600}):
            first = producer.append_message(OWNER, "s1", "user", "hello")
            async with AsyncReader.from_url(deployed) as reader:
                assert (await reader.wait(first, timeout=20)).applied
                default_at = _expiry_ms(r, "s1")
                assert default_at >= _ms(first) + 3600_000 - 1
                chosen = producer.set_session_ttl(OWNER, "s1", 2)
                assert (await reader.wait(chosen, timeout=20)).applied
                # Shortened: the newest message's time plus the session's 2 s.
                assert _expiry_ms(r, "s1") == _ms(first) + 2000
                await asyncio.sleep(0.3)
                later = producer.append_message(OWNER, "s1", "user", "still here")
                assert (await reader.wait(later, timeout=20)).applied
                assert _expiry_ms(r, "s1") == _ms(later) + 2000  # activity slides it
                assert len(await reader.history(OWNER, "s1")) == 2
                never = producer.start_session(OWNER, "s2", ttl_s=0)
                kept = producer.append_message(OWNER, "s2", "user", "forever")
                assert (await reader.wait(kept, timeout=20)).applied and never.log_id
                assert _expiry_ms(r, "s2") == -1  # 0 chose no expiry over the default
                await asyncio.sleep(max(0.0, (_ms(later) + 2300) / 1000 - time.time()))
                assert await reader.history(OWNER, "s1") == []
        # Replay folds the expired session again: it must not come back.
        summary = await asyncio.to_thread(
            replay_all, r, Settings.from_url(deployed, history_ttl_s=3600), grace_s=0.2,
            catchup_timeout_s=30,
        )  # fmt: skip
        assert summary.to_version == 2
        async with AsyncReader.from_url(deployed) as reader:
            assert await reader.history(OWNER, "s1") == []
            assert [m["content"] for m in await reader.history(OWNER, "s2")] == ["forever"]


@pytest.mark.parametrize("ttl_s", [-1, 10 * 365 * 86_400 + 1, 1.5])
def test_out_of_range_session_ttls_are_refused_by_name(deployed: str, ttl_s: float) -> None:
    with Producer.from_url(deployed) as producer:
        with pytest.raises(InvalidInputError, match="ttl_s"):
            producer.set_session_ttl(OWNER, "s1", ttl_s)
        with pytest.raises(InvalidInputError, match="ttl_s"):
            producer.start_session(OWNER, "s1", ttl_s=ttl_s)


# --- The session's data follows its TTL; extensions reach chosen TTLs ---------------------


def _data_events(now: int) -> list[StoredEvent]:
    """Session data and history of two sessions under TTL choices and extensions: s1
    chooses 60 s then 30 s and is extended; s2 chooses never, then the default again."""

    at = timeline(OWNER, now - 50_000)
    return [
        at(0, SessionStarted(ttl_s=60), "s1", 2),
        at(1_000, SessionDataSet(key="lang", value="en"), "s1"),
        at(2_000, MessageAppended(role="user", content="a"), "s1"),
        at(3_000, SessionTtlSet(ttl_s=30), "s1"),
        at(4_000, SessionDataSet(key="lang", value="fr"), "s1"),
        at(5_000, TtlExtended(seconds=120), "s1"),
        at(6_000, SessionDataSet(key="tz", value="utc"), "s1"),
        at(500, SessionDataSet(key="k", value=1), "s2"),
        at(1_500, SessionTtlSet(ttl_s=0), "s2"),
        at(2_500, SessionDataSet(key="k", value=2), "s2"),
        at(3_500, TtlExtended(seconds=600), "s2"),
        at(4_500, SessionTtlSet(ttl_s=None), "s2"),
        at(7_000, TtlExtended(seconds=30), None),
    ]


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    order=st.permutations(range(13)),
    duplicates=st.lists(st.integers(0, 12), max_size=3),
    batch=st.sampled_from([[1], [4], [2, 13]]),
    defaults=st.sampled_from([(None, None), (20, 40), (3600, None), (None, 3600)]),
)
def test_session_data_ttls_converge_in_any_order(
    r: redis.Redis,
    deployed: str,
    order: list[int],
    duplicates: list[int],
    batch: list[int],
    defaults: tuple[int | None, int | None],
) -> None:
    now = (int(time.time()) + 86_400) * 1000
    history_ttl, session_ttl = defaults
    check_convergence(
        r, [History(), Sessions()], _data_events(now), order=order, duplicates=duplicates,
        batch_sizes=batch, settings=Settings(history_ttl_s=history_ttl, session_ttl_s=session_ttl),
        now_ms=now,
    )  # fmt: skip


def _data_expiry_ms(r: redis.Redis, session: str) -> int:
    return int(r.pexpiretime(keys.Projection(P, 1).key("sess_data", OWNER, session)))


async def test_session_data_follows_the_chosen_ttl(deployed: str, r: redis.Redis) -> None:
    with Producer.from_url(deployed) as producer:
        # No history TTL and no session TTL in the deployment: only the choices expire.
        async with running_worker(deployed), AsyncReader.from_url(deployed) as reader:
            started = producer.start_session(OWNER, "s1", ttl_s=3600)
            data = producer.set_session_data(OWNER, "s1", "lang", "en")
            assert (await reader.wait(data, timeout=20)).applied and started.log_id
            assert _data_expiry_ms(r, "s1") == _ms(data) + 3600_000  # newest write + TTL
            shorter = producer.set_session_ttl(OWNER, "s1", 2)
            assert (await reader.wait(shorter, timeout=20)).applied
            assert _data_expiry_ms(r, "s1") == _ms(data) + 2000  # the choice shortened it
            extended = producer.append(OWNER, TtlExtended(seconds=60), session="s1")
            assert (await reader.wait(extended, timeout=20)).applied
            # The extension reaches a chosen TTL even with no deployment TTL: the floor.
            assert _data_expiry_ms(r, "s1") == _ms(extended) + 60_000
            never = producer.set_session_ttl(OWNER, "s1", 0)
            assert (await reader.wait(never, timeout=20)).applied
            assert _data_expiry_ms(r, "s1") == -1
            producer.set_session_ttl(OWNER, "s2", 1)
            gone = producer.set_session_data(OWNER, "s2", "k", "v")
            assert (await reader.wait(gone, timeout=20)).applied
            await asyncio.sleep(max(0.0, (_ms(gone) + 1300) / 1000 - time.time()))
            assert await reader.session_data(OWNER, "s2") == {}
            assert await reader.session_data(OWNER, "s1") == {"lang": "en"}
        summary = await asyncio.to_thread(
            replay_all, r, Settings.from_url(deployed), grace_s=0.2, catchup_timeout_s=30
        )
        assert summary.to_version == 2
        async with AsyncReader.from_url(deployed) as reader:
            assert await reader.session_data(OWNER, "s2") == {}  # replay does not resurrect
            assert await reader.session_data(OWNER, "s1") == {"lang": "en"}


def test_an_extension_reaches_a_chosen_history_ttl_without_a_default(
    r: redis.Redis, deployed: str
) -> None:
    now = (int(time.time()) + 86_400) * 1000
    version = 900_201
    pk = keys.Projection(P, version)

    def at(dt_ms: int, event: Event, version_: int = 1) -> StoredEvent:
        return StoredEvent(OWNER, f"{now - 5_000 + dt_ms}-0", event.TYPE, version_, event,
                           session="s1")  # fmt: skip

    events = [
        at(0, SessionStarted(ttl_s=60), 2),
        at(1_000, MessageAppended(role="user", content="hi")),
        at(2_000, TtlExtended(seconds=3600)),
    ]
    ctx = ApplyContext(pk, Settings(), now)
    batches = []
    for event in events:
        writes = Writes()
        History().apply(event, ctx, writes)
        batches.append(writes.ops)
    call: Any = r.execute_command
    try:
        call(*write_command([ops for ops in batches if ops]))
        expiry = int(r.pexpiretime(pk.key("hist", OWNER, "s1")))
        assert expiry == events[2].ts_ms + 3600_000  # the extension, not the message + 60 s
    finally:
        names = list(r.scan_iter(match=keys.version_prefix(P, version) + "*"))
        if names:
            r.delete(*names)
