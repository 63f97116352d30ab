"""Every built-in projection converges: random events, permutations, duplicates, batches.

The harness (memstream.projections.testing) applies the events once in log order and
once permuted, both through the real ack-gated ``ms_apply``, and compares every key,
value and expire time. The toy projections at the end prove that it can fail.
"""

from __future__ import annotations

import time
from typing import ClassVar

import pytest
import redis
from hypothesis import HealthCheck, example, given, settings

from memstream.producers import keys
from memstream.producers.entry import StoredEvent
from memstream.producers.events import StepRecorded
from memstream.producers.events_messages import HistoryCleared, MessageAppended
from memstream.producers.settings import Settings
from memstream.projections.base import ApplyContext, Projection
from memstream.projections.history import History
from memstream.projections.ops import Writes, sortable
from memstream.projections.registry import default_projections
from memstream.projections.sessions import Sessions
from memstream.projections.state import State
from memstream.projections.testing import (
    BUILTIN_KINDS,
    ConvergenceError,
    Deliveries,
    check_convergence,
    event_streams,
    with_deliveries,
)
from memstream.projections.working import Working

NOW = (int(time.time()) + 86_400) * 1000
"""The projections' clock: a day ahead of Redis's, so no expire time passes mid-check."""
RECENT = NOW - 16_000
"""Events from here to NOW straddle the short TTLs below: some are expired at NOW."""

PROPERTY = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
Case = tuple[list[StoredEvent], Deliveries]


def converge(r: redis.Redis, projections: list[Projection], case: Case, config: Settings) -> None:
    events, (order, duplicates, sizes) = case
    before = r.dbsize()
    try:
        check_convergence(
            r, projections, events, order=order, duplicates=duplicates, batch_sizes=sizes,
            settings=config, now_ms=NOW,
        )  # fmt: skip
    finally:
        assert r.dbsize() == before, "the harness left scratch keys behind"


@PROPERTY
@given(
    case=with_deliveries(
        event_streams(
            owners=("alice", "carol", "dave"),  # carol and dave share a partition
            sessions=("s1", "s2"),
            kinds=("message.appended", "history.cleared"),
        )
    )
)
def test_history_converges_with_cap_and_clears(r: redis.Redis, deployed: str, case: Case) -> None:
    converge(r, [History()], case, Settings(history_cap=5))


@PROPERTY
@given(case=with_deliveries(event_streams(kinds=("state.saved", "step.recorded"))))
def test_state_converges(r: redis.Redis, deployed: str, case: Case) -> None:
    converge(r, [State()], case, Settings())


@PROPERTY
@given(case=with_deliveries(event_streams(sessions=("s1", "s2", "s3", "s4"))))
def test_sessions_converge(r: redis.Redis, deployed: str, case: Case) -> None:
    converge(r, [Sessions()], case, Settings())


@PROPERTY
@given(
    case=with_deliveries(
        event_streams(kinds=("step.recorded", "message.appended"), start_ms=RECENT, span_ms=16_000)
    )
)
def test_working_converges_with_cap_and_ttl(r: redis.Redis, deployed: str, case: Case) -> None:
    config = Settings(working_cap=3, working_ttl_s=10)
    ctx = ApplyContext(keys.Projection(0, 1), config, NOW)
    for event in case[0]:
        if ctx.expired(event, config.working_ttl_s):
            writes = Writes()
            Working().apply(event, ctx, writes)
            assert writes.ops == [], "an expired step must write nothing"
    converge(r, [Working()], case, config)


@PROPERTY
@given(case=with_deliveries(event_streams(start_ms=RECENT, span_ms=16_000)))
def test_all_projections_converge_together(r: redis.Redis, deployed: str, case: Case) -> None:
    config = Settings(history_cap=4, working_cap=3, working_ttl_s=10)
    converge(r, default_projections(), case, config)


@PROPERTY
@given(
    case=with_deliveries(
        event_streams(
            kinds=[k for k in BUILTIN_KINDS if k != "history.cleared"],
            start_ms=NOW - 30_000,
            span_ms=30_000,
        )
    )
)
def test_expire_times_converge(r: redis.Redis, deployed: str, case: Case) -> None:
    config = Settings(history_ttl_s=15, state_ttl_s=12, session_ttl_s=20, working_ttl_s=10)
    converge(r, default_projections(), case, config)


def _cleared_then_appended() -> Case:
    """Log order: s1 cleared, then a message (both live). Delivered: message first."""
    at = NOW - 5_000
    cleared = StoredEvent("alice", f"{at}-0", "history.cleared", 1, HistoryCleared(), session="s1")
    message = MessageAppended(role="user", content="hi")
    appended = StoredEvent("alice", f"{at + 1000}-0", "message.appended", 1, message, session="s1")
    return [cleared, appended], ([1, 0], [], [1])


@PROPERTY
@example(case=_cleared_then_appended())
@given(
    case=with_deliveries(
        event_streams(
            sessions=("s1", "s2"),
            kinds=("message.appended", "history.cleared"),
            start_ms=NOW - 30_000,
            span_ms=30_000,
        )
    )
)
def test_history_expire_times_converge_with_clears(
    r: redis.Redis, deployed: str, case: Case
) -> None:
    converge(r, [History()], case, Settings(history_cap=5, history_ttl_s=20))


# --- The harness itself --------------------------------------------------------------


class LastArrival(Projection):
    """Not convergent: every step replaces the set, so the last one delivered wins."""

    name: ClassVar[str] = "last_arrival"
    handles: ClassVar[frozenset[str]] = frozenset({"step.recorded"})

    def apply(self, event: StoredEvent, ctx: ApplyContext, writes: Writes) -> None:
        key = ctx.keys.key("toy_last", event.owner)
        writes.delete(key)
        writes.zlog(key, sortable(event.log_id), b"x")


class ExpiryByArrival(Projection):
    """Same value in any order, but the expire time depends on which step came last."""

    name: ClassVar[str] = "expiry_by_arrival"
    handles: ClassVar[frozenset[str]] = frozenset({"step.recorded"})

    def apply(self, event: StoredEvent, ctx: ApplyContext, writes: Writes) -> None:
        key = ctx.keys.key("toy_expiry", event.owner)
        assert isinstance(event.event, StepRecorded)
        if event.event.action == "reset":
            writes.delete(key)
        writes.zmax(key, "m", 1)
        if event.event.action == "expire":
            writes.expire_at(key, event.ts_ms + 60_000)


class Counter(Projection):
    """Convergent only if each event counts once: duplicates must have no effect."""

    name: ClassVar[str] = "counter"
    handles: ClassVar[frozenset[str]] = frozenset({"step.recorded"})

    def apply(self, event: StoredEvent, ctx: ApplyContext, writes: Writes) -> None:
        writes.hincr(ctx.keys.key("toy_count", event.owner), "steps", 1)


def _steps(*actions: str) -> list[StoredEvent]:
    return [
        StoredEvent("alice", f"{RECENT + i}-0", "step.recorded", 1, StepRecorded(action=a))
        for i, a in enumerate(actions)
    ]


def test_harness_detects_an_order_dependent_projection(r: redis.Redis, deployed: str) -> None:
    events = _steps("a", "b")
    converge(r, [LastArrival()], (events, ([0, 1], [], [1])), Settings())
    with pytest.raises(ConvergenceError, match=r"LastArrival do not converge.*toy_last:alice"):
        converge(r, [LastArrival()], (events, ([1, 0], [], [1])), Settings())


def test_harness_compares_expire_times(r: redis.Redis, deployed: str) -> None:
    events = _steps("expire", "reset")
    with pytest.raises(ConvergenceError, match=r"never expires(.|\n)*expires at \d+ ms"):
        converge(r, [ExpiryByArrival()], (events, ([1, 0], [], [2])), Settings())


def test_duplicates_have_no_second_effect(r: redis.Redis, deployed: str) -> None:
    events = _steps("a", "b", "c")
    converge(r, [Counter()], (events, ([2, 0, 1], [0, 0, 2, 1, 0], [2, 3])), Settings())


def test_harness_refuses_a_clock_behind_redis(r: redis.Redis, deployed: str) -> None:
    with pytest.raises(ValueError, match="ahead of the Redis clock"):
        check_convergence(
            r, [Counter()], _steps("a"), order=[0], duplicates=[], now_ms=int(time.time() * 1000)
        )
    with pytest.raises(ValueError, match="permutation"):
        check_convergence(r, [Counter()], _steps("a"), order=[1], duplicates=[], now_ms=NOW)
