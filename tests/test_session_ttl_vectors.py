"""Message vectors follow ``ttl.extended`` as their session's history does (docs/ttl.md):
a vector written before or after the extension ends with the extended expiry, in its
payload and its live-set score; other sessions' vectors keep theirs; any order converges."""

from __future__ import annotations

import time

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memstream.producers import keys
from memstream.producers.entry import StoredEvent
from memstream.producers.events_live import TtlExtended
from memstream.producers.settings import Settings
from memstream.projections.history import History
from memstream.projections.ops import sortable
from memstream.projections.testing import check_convergence
from memstream.projections.vectors import (
    Vectors,
    message_ref,
)
from tests.test_vectors_projection import Counting
from tests.timeline import timeline, user
from tests.vector_fold import fold_vectors, stored_expiry

OWNER = "agent.vee"
P = keys.partition(OWNER, 16)
CONFIG = Settings(history_ttl_s=10, embed_messages=True)


def _events(now: int) -> list[StoredEvent]:
    at = timeline(OWNER, now - 5_000, version=None)
    return [
        at(0, user("hello there"), "s1"),
        at(1_000, TtlExtended(seconds=600), "s1"),
        at(2_000, user("later words"), "s1"),
        at(500, user("other session"), "s2"),
        at(3_000, TtlExtended(seconds=300), "s1"),
        at(4_000, TtlExtended(seconds=60), None),
    ]


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    order=st.permutations(range(6)),
    duplicates=st.lists(st.integers(0, 5), max_size=2),
    batch=st.sampled_from([[1], [3], [2, 6]]),
)
def test_message_vectors_and_extensions_converge(
    r: redis.Redis, deployed: str, order: list[int], duplicates: list[int], batch: list[int]
) -> None:
    now = (int(time.time()) + 86_400) * 1000
    check_convergence(
        r, [History(), Vectors(Counting())], _events(now), order=order, duplicates=duplicates,
        batch_sizes=batch, settings=CONFIG, now_ms=now,
    )  # fmt: skip


def _fold(r: redis.Redis, version: int, events: list[StoredEvent], now: int) -> None:
    fold_vectors(r, keys.Projection(P, version), CONFIG, events, now)


def _expiries(r: redis.Redis, version: int, ref: str) -> tuple[int, int]:
    return stored_expiry(r, keys.Projection(P, version), OWNER, ref)


def test_a_vector_written_before_or_after_the_extension_gets_it(
    r: redis.Redis, deployed: str
) -> None:
    now = (int(time.time()) + 86_400) * 1000
    message, extension, other = _events(now)[0], _events(now)[1], _events(now)[3]
    extended = extension.ts_ms + 600_000
    for version, events in ((900_101, [message, extension, other]),
                            (900_102, [extension, other, message])):  # fmt: skip
        try:
            _fold(r, version, events, now)
            assert _expiries(r, version, message_ref("s1", _v(message))) == (extended, extended)
            # Another session's vector keeps its own expiry: its event time plus the TTL.
            own = other.ts_ms + 10_000
            assert _expiries(r, version, message_ref("s2", _v(other))) == (own, own)
        finally:
            names = list(r.scan_iter(match=keys.version_prefix(P, version) + "*"))
            if names:
                r.delete(*names)


def _v(event: StoredEvent) -> str:
    return sortable(event.log_id)
