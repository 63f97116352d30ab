"""A session id used again after its history expired starts a new life (docs/ttl.md, "A
session's lives"): every read of the session's messages (the hot window, paging into the
log, keyword search hot and cold, semantic search) shows the current life only, in a live
run and after a replay alike. The boundary is a pure function of merged state: any
delivery order, duplicates and batches agree, and a late message that bridges a gap
joins the two sides into one life again."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memstream.producers import AsyncProducer, Receipt, Settings, keys
from memstream.producers.entry import StoredEvent
from memstream.producers.events import SessionStarted, SessionTtlSet
from memstream.producers.events_live import TtlExtended
from memstream.producers.events_messages import HistoryCleared, MessageAppended
from memstream.projections.base import ApplyContext
from memstream.projections.history import History, read_messages
from memstream.projections.ops import Writes, write_command
from memstream.projections.reader import AsyncReader
from memstream.projections.testing import check_convergence
from memstream.workers.replay import replay_all
from tests.timeline import timeline, user
from tests.workers_util import running_worker

OWNER = "agent.lives"
P = keys.partition(OWNER, 16)


def _events(now: int) -> list[StoredEvent]:
    """ "again": two lives (a 27 s gap, TTL 10 s); "bridge": gaps of 11.5 s and 12 s under
    15 s, one life however its middle message arrives; "ext": a 39 s gap kept by an
    extension's floor; "cut": a clear, then two lives. Event times within the last 50 s."""

    at = timeline(OWNER, now - 50_000)
    return [
        at(0, SessionStarted(ttl_s=10), "again", 2),
        at(1_000, user("a1"), "again"),
        at(3_000, user("a2"), "again"),
        at(3_500, TtlExtended(seconds=1), "again"),  # already past when applied
        at(30_000, user("b1"), "again"),
        at(31_000, user("b2"), "again"),
        at(100, SessionTtlSet(ttl_s=15), "bridge"),
        at(500, user("c1"), "bridge"),
        at(12_000, user("c2"), "bridge"),
        at(24_000, user("c3"), "bridge"),
        at(200, SessionTtlSet(ttl_s=10), "ext"),
        at(1_500, user("d1"), "ext"),
        at(2_500, TtlExtended(seconds=200_000), "ext"),  # a floor past every message
        at(40_500, user("d2"), "ext"),
        at(300, SessionTtlSet(ttl_s=10), "cut"),
        at(600, user("e1"), "cut"),
        at(700, HistoryCleared(), "cut"),
        at(800, user("e2"), "cut"),
        at(25_000, user("e3"), "cut"),
        at(400, SessionStarted(ttl_s=1), "rechose", 2),
        at(900, user("f1"), "rechose"),
        at(5_000, user("f2"), "rechose"),  # 4.1 s after f1, under the 1 s then in effect
        at(6_000, SessionTtlSet(ttl_s=3600), "rechose"),  # longer, but only from here on
        at(7_000, user("f3"), "rechose"),
        at(450, SessionTtlSet(ttl_s=10), "deadext"),
        at(1_200, user("g1"), "deadext"),
        at(20_000, TtlExtended(seconds=200_000), "deadext"),  # g1's life ended at 11.2 s
        at(30_000, user("g2"), "deadext"),
    ]


WANT = {"again": ["b1", "b2"], "bridge": ["c1", "c2", "c3"], "ext": ["d1", "d2"], "cut": ["e3"],
        "rechose": ["f2", "f3"], "deadext": ["g2"]}  # fmt: skip
N = 28


def _now() -> int:
    # A day ahead of the server clock, so no expiry computed here passes mid-check.
    return (int(time.time()) + 86_400) * 1000


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    order=st.permutations(range(N)),
    duplicates=st.lists(st.integers(0, N - 1), max_size=3),
    batch=st.sampled_from([[1], [3], [2, 5], [N]]),
    default=st.sampled_from([None, 20, 3600]),
)
def test_session_lives_converge_in_any_order(
    r: redis.Redis,
    deployed: str,
    order: list[int],
    duplicates: list[int],
    batch: list[int],
    default: int | None,
) -> None:
    now = _now()
    check_convergence(
        r, [History()], _events(now), order=order, duplicates=duplicates, batch_sizes=batch,
        settings=Settings(history_ttl_s=default), now_ms=now,
    )  # fmt: skip


def _fold(
    r: redis.Redis, pk: keys.Projection, calls: list[list[StoredEvent]], now: int, cap: int = 100
) -> None:
    """Apply ``calls`` with the history projection, one ``ms_write`` call each."""
    ctx = ApplyContext(pk, Settings(history_cap=cap), now)
    call: Any = r.execute_command
    for events in calls:
        batches = []
        for event in events:
            writes = Writes()
            History().apply(event, ctx, writes)
            batches.append(writes.ops)
        call(*write_command([ops for ops in batches if ops]))


def _read(r: redis.Redis, pk: keys.Projection, session: str, last: int = 20) -> list[str]:
    plan = read_messages(pk, OWNER, session, last)
    call: Any = r.execute_command
    found = plan.parse([call(*command) for command in plan.commands])
    assert isinstance(found, list)
    return [m.content for m in found]


def test_each_session_reads_its_current_life_in_every_order(r: redis.Redis, deployed: str) -> None:
    now = _now()
    events = _events(now)
    orders = {
        "log order, one call": [sorted(events, key=lambda e: e.log_id)],
        "log order, one call per event": [[e] for e in sorted(events, key=lambda e: e.log_id)],
        "reversed, one call per event": [[e] for e in sorted(events, key=lambda e: e.log_id)][::-1],
        "as listed, one call per event": [[e] for e in events],
    }
    for n, (name, calls) in enumerate(orders.items()):
        pk = keys.Projection(P, 900_301 + n)
        try:
            _fold(r, pk, calls, now)
            assert {s: _read(r, pk, s) for s in WANT} == WANT, name
        finally:
            names = list(r.scan_iter(match=keys.version_prefix(P, pk.version) + "*"))
            if names:
                r.delete(*names)


def test_a_late_message_bridges_a_gap_and_an_old_one_does_not_cut_it(
    r: redis.Redis, deployed: str
) -> None:
    now = _now()
    e = {ev.event.content: ev for ev in _events(now) if isinstance(ev.event, MessageAppended)}
    choice = _events(now)[6]  # bridge's TTL, 15 s
    pk = keys.Projection(P, 900_311)
    try:
        _fold(r, pk, [[choice, e["c1"]], [e["c3"]]], now)
        assert _read(r, pk, "bridge") == ["c3"]  # a 23.5 s gap: c1 is of an earlier life
        _fold(r, pk, [[e["c2"]]], now)
        assert _read(r, pk, "bridge") == ["c1", "c2", "c3"]  # bridged: one life again
        _fold(r, pk, [[e["c1"]], [e["c3"], e["c2"]]], now)  # duplicates change nothing
        assert _read(r, pk, "bridge") == ["c1", "c2", "c3"]
    finally:
        names = list(r.scan_iter(match=keys.version_prefix(P, pk.version) + "*"))
        if names:
            r.delete(*names)


def test_a_choice_made_before_ttl_events_were_kept_still_judges_the_gaps(
    r: redis.Redis, deployed: str
) -> None:
    now = _now()
    events = _events(now)
    e = {ev.event.content: ev for ev in events if isinstance(ev.event, MessageAppended)}
    pk = keys.Projection(P, 900_331)
    ctx = ApplyContext(pk, Settings(), now)
    writes = Writes()
    History().apply(events[0], ctx, writes)  # "again" chose 10 s: its LWW, without its event
    call: Any = r.execute_command
    call(*write_command([[op for op in writes.ops if op[0] != "TLADD"]]))
    try:
        _fold(r, pk, [[e["a1"], e["a2"], e["b1"], e["b2"]]], now)
        assert _read(r, pk, "again") == ["b1", "b2"]
    finally:
        names = list(r.scan_iter(match=keys.version_prefix(P, pk.version) + "*"))
        if names:
            r.delete(*names)


LIVE = "agent.lives.live"
CAP = 3
TTL_S = 5  # long enough for the replay to read the new life before it expires too


def _ms(receipt: Receipt) -> int:
    return int(receipt.log_id.split("-")[0])


async def _reads(reader: AsyncReader) -> dict[str, Any]:
    """Every read of session "back" that could reach its earlier life."""
    page = await reader.history(LIVE, "back", last=10)  # past the full hot window
    first = page[0].log_id if page else None
    older = await reader.history(LIVE, "back", last=10, before=first) if first else []
    hot = await reader.search_messages(LIVE, "disk", mode="keyword", limit=20)
    cold = await reader.search_messages(LIVE, "disk", mode="keyword", limit=20, cold=True)
    semantic = await reader.search_messages(LIVE, "disk", mode="semantic", limit=20)
    return {
        "history": [m.content for m in page],
        "before": [m.content for m in older],
        "keyword": sorted(h.message["content"] for h in hot),
        "cold": sorted(h.message["content"] for h in cold),
        "semantic": sorted(h.message["content"] for h in semantic),
    }


async def test_a_session_used_again_reads_its_new_life_live_and_after_replay(
    r: redis.Redis, deployed: str
) -> None:
    config = {"history_cap": CAP, "embed_messages": True}
    settings_ = Settings.from_url(deployed, **config)
    async with (
        running_worker(deployed, settings=config),
        AsyncProducer.from_url(deployed) as p,
        AsyncReader.from_settings(settings_) as reader,
    ):
        await p.start_session(LIVE, "back", ttl_s=TTL_S)
        for n in range(4):  # one more than the cap: the oldest is in the log alone
            old = await p.append_message(LIVE, "back", "user", f"old disk {n}")
        assert (await reader.wait(old, timeout=60)).applied
        await asyncio.sleep(max(0.0, (_ms(old) + TTL_S * 1000 + 400) / 1000 - time.time()))
        for n in range(CAP):  # a full hot window of the new life
            new = await p.append_message(LIVE, "back", "user", f"new disk {n}")
        assert (await reader.wait(new, timeout=60)).applied
        want = [f"new disk {n}" for n in range(CAP)]
        live = await _reads(reader)
        assert live == {"history": want, "before": [], "keyword": want, "cold": want,
                        "semantic": want}  # fmt: skip

    summary = await asyncio.to_thread(replay_all, r, settings_, grace_s=0.2, catchup_timeout_s=30)
    assert summary.to_version == 2
    async with AsyncReader.from_settings(settings_) as reader:
        replayed = await _reads(reader)  # the replay folded both lives: same reads
        assert time.time() * 1000 < _ms(new) + TTL_S * 1000 - 300, "too slow to check"
        assert replayed == live
