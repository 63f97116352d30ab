"""The world model and exploration converge: any order, duplicates, batches (harness).

Configurations in a case always cover the evidence drawn with them, as a producer that
checks evidence against the configuration guarantees; evidence may still arrive before its
configuration, and counts must not care.
"""

from __future__ import annotations

import time

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memstream.producers.entry import StoredEvent
from memstream.producers.events import EvidenceObserved
from memstream.producers.events_world import ExplorationRecorded, WorldConfigured
from memstream.producers.settings import Settings
from memstream.projections.exploration import Exploration
from memstream.projections.testing import Deliveries, check_convergence, event_streams
from memstream.projections.testing import with_deliveries as deliveries_for
from memstream.projections.world import World

NOW = (int(time.time()) + 86_400) * 1000
PROPERTY = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
Case = tuple[list[StoredEvent], Deliveries]

OUTCOMES = {"occupied": ["yes", "no"], "mood": ["calm", "busy", "loud", "empty"]}
NODES = (["r1", "r2", "r3"], ["meeting", "desk"], ["north"])

weights = st.sampled_from([1.0, 0.5, 2.25]) | st.floats(1e-6, 50, allow_nan=False)
path = st.tuples(*[st.sampled_from(level) for level in NODES]).flatmap(
    lambda full: st.sampled_from([list(full), list(full[1:]), list(full[2:])])
)
evidence = st.sampled_from(sorted(OUTCOMES)).flatmap(
    lambda v: st.builds(
        EvidenceObserved, scenario=st.sampled_from(["office", "home"]), path=path,
        variable=st.just(v), outcome=st.sampled_from(OUTCOMES[v]), weight=weights,
        source=st.none() | st.just("sensor"),
    )
)  # fmt: skip
configured = st.builds(
    WorldConfigured, scenario=st.sampled_from(["office", "home"]), variables=st.just(OUTCOMES),
    levels=st.sampled_from([3, 4]), kappa=st.sampled_from([2.0, 0.5]),
)  # fmt: skip
exploration = st.builds(
    ExplorationRecorded, trigger=st.sampled_from(["novel_situation", "curiosity", "mine"]),
    pattern=st.sampled_from(["probe", "ask", "wait"]),
    context_tags=st.lists(st.sampled_from(["door", "dark", "noisy"]), max_size=3),
    success=st.booleans(), reward=st.sampled_from([0.0, -1.5]) | st.floats(-10, 10),
)  # fmt: skip
PAYLOADS = {"evidence.observed": evidence, "world.configured": configured,
            "exploration.recorded": exploration}  # fmt: skip


def converge(r: redis.Redis, case: Case) -> None:
    events, (order, duplicates, sizes) = case
    before = r.dbsize()
    check_convergence(
        r, [World(), Exploration()], events, order=order, duplicates=duplicates,
        batch_sizes=sizes, settings=Settings(), now_ms=NOW,
    )  # fmt: skip
    assert r.dbsize() == before


@PROPERTY
@given(
    case=deliveries_for(
        event_streams(
            owners=("alice", "carol", "dave"), kinds=tuple(PAYLOADS), payloads=PAYLOADS,
            start_ms=NOW - 60_000, max_size=30,
        )
    )
)  # fmt: skip
def test_world_and_exploration_converge(r: redis.Redis, deployed: str, case: Case) -> None:
    converge(r, case)


def test_duplicates_and_reversed_order_give_the_same_counts(r: redis.Redis, deployed: str) -> None:
    """A fixed case with every event delivered twice, in reverse, one per batch."""
    at = NOW - 10_000
    payloads = [
        WorldConfigured(scenario="office", variables=OUTCOMES, levels=3),
        EvidenceObserved(scenario="office", path=["r1", "meeting", "north"], variable="mood",
                         outcome="loud", weight=0.1),
        EvidenceObserved(scenario="office", path=["r2", "meeting", "north"], variable="mood",
                         outcome="loud", weight=0.2),
        ExplorationRecorded(trigger="curiosity", pattern="probe", success=True, reward=0.3),
    ]  # fmt: skip
    events = [
        StoredEvent("alice", f"{at + i}-0", p.event_type, 1, p) for i, p in enumerate(payloads)
    ]
    n = len(events)
    converge(r, (events, (list(reversed(range(n))), list(range(n)), [1])))
