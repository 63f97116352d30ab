"""Message vectors of a session that chose a TTL longer than ``history_ttl_s`` live as
long as its history (docs/ttl.md): the stored expiry (payload and live-set score) is
raised to the message's time + the longest TTL the session chose, whether the choice
comes before the message (``VFLOOR``) or after it (``VTTL``), so semantic search and
``PRUNE`` keep them after the default has passed; a session with no choice loses them;
any delivery order converges."""

from __future__ import annotations

import asyncio
import time

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memstream.producers import AsyncProducer, Receipt, Settings, keys
from memstream.producers.entry import StoredEvent
from memstream.producers.events import SessionStarted, SessionTtlSet
from memstream.producers.events_live import TtlExtended
from memstream.projections.history import History
from memstream.projections.ops import sortable
from memstream.projections.reader import AsyncReader
from memstream.projections.testing import check_convergence
from memstream.projections.vectors import (
    MESSAGE,
    NEVER_MS,
    Vectors,
    message_ref,
    space_of,
    vector_key,
)
from tests.test_vectors_projection import Counting
from tests.timeline import timeline, user
from tests.vector_fold import fold_vectors, stored_expiry
from tests.workers_util import running_worker

OWNER = "agent.vchosen"
P = keys.partition(OWNER, 16)
CONFIG = Settings(history_ttl_s=10, embed_messages=True)


def _events(now: int) -> list[StoredEvent]:
    at = timeline(OWNER, now - 5_000, version=None)
    return [
        at(0, SessionStarted(ttl_s=600), "s1"),  # chosen at start
        at(100, user("hello there"), "s1"),
        at(200, user("before its choice"), "s2"),
        at(300, SessionTtlSet(ttl_s=300), "s2"),  # chosen later...
        at(400, SessionTtlSet(ttl_s=20), "s2"),  # ...then shorter: lowers nothing
        at(500, user("after its choices"), "s2"),
        at(600, user("no choice"), "s3"),
        at(700, SessionTtlSet(ttl_s=0), "s4"),  # never
        at(800, user("kept for good"), "s4"),
        at(900, TtlExtended(seconds=900), "s1"),
    ]


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    order=st.permutations(range(10)),
    duplicates=st.lists(st.integers(0, 9), max_size=2),
    batch=st.sampled_from([[1], [3], [2, 6]]),
)
def test_message_vectors_and_chosen_ttls_converge(
    r: redis.Redis, deployed: str, order: list[int], duplicates: list[int], batch: list[int]
) -> None:
    now = (int(time.time()) + 86_400) * 1000
    check_convergence(
        r, [History(), Vectors(Counting())], _events(now), order=order, duplicates=duplicates,
        batch_sizes=batch, settings=CONFIG, now_ms=now,
    )  # fmt: skip


def _fold(r: redis.Redis, version: int, events: list[StoredEvent], now: int) -> None:
    fold_vectors(r, keys.Projection(P, version), CONFIG, events, now)


def _expiries(r: redis.Redis, version: int, event: StoredEvent) -> tuple[int, int]:
    ref = message_ref(event.session or "", sortable(event.log_id))
    return stored_expiry(r, keys.Projection(P, version), OWNER, ref)


def test_a_vector_gets_the_longest_choice_in_either_order(r: redis.Redis, deployed: str) -> None:
    now = (int(time.time()) + 86_400) * 1000
    e = _events(now)
    started, hello, before, longer, shorter, after, plain, never, kept = e[:9]

    def ms(event: StoredEvent) -> int:
        return int(event.log_id.split("-")[0])

    choices = [started, longer, shorter, never]
    messages = [hello, before, after, plain, kept]
    for version, events in ((900_201, choices + messages), (900_202, messages + choices),
                            (900_203, messages[::-1] + choices[::-1])):  # fmt: skip
        try:
            _fold(r, version, events, now)
            for message, ttl_ms in ((hello, 600_000), (before, 300_000), (after, 300_000),
                                    (plain, 10_000), (kept, NEVER_MS)):  # fmt: skip
                want = ms(message) + ttl_ms
                assert _expiries(r, version, message) == (want, want), (version, message)
            pk = keys.Projection(P, version)
            vk = vector_key(pk, OWNER, space_of(Counting.name, Counting.dimension), MESSAGE)
            # The keys live as long as their longest vector ("never" is ts + NEVER_S).
            assert r.pexpiretime(vk) == ms(kept) + NEVER_MS
        finally:
            names = list(r.scan_iter(match=keys.version_prefix(P, version) + "*"))
            if names:
                r.delete(*names)


SHORT_S, LONG_S = 2, 60
LIVE_OWNER = "agent.vchosen.live"


def _ms(receipt: Receipt) -> int:
    return int(receipt.log_id.split("-")[0])


async def test_semantic_search_keeps_a_longer_chosen_ttls_messages(
    r: redis.Redis, deployed: str
) -> None:
    config = {"embed_messages": True, "history_ttl_s": SHORT_S}
    reader_settings = Settings.from_url(deployed, **config)

    async def found(reader: AsyncReader) -> set[str]:
        hits = await reader.search_messages(LIVE_OWNER, "storage full disk", mode="semantic",
                                            limit=100)  # fmt: skip
        return {h.session or "" for h in hits}

    async with (
        running_worker(deployed, settings=config),
        AsyncProducer.from_url(deployed) as p,
        AsyncReader.from_settings(reader_settings) as reader,
    ):
        await p.start_session(LIVE_OWNER, "early", ttl_s=LONG_S)
        first = await p.append_message(LIVE_OWNER, "early", "user", "my database ran out of disk")
        await p.append_message(LIVE_OWNER, "late", "user", "the storage volume is full")
        await p.append_message(LIVE_OWNER, "plain", "user", "disk quota exceeded")
        chosen = await p.set_session_ttl(LIVE_OWNER, "late", LONG_S)
        assert (await reader.wait(chosen, timeout=60)).applied
        assert await found(reader) == {"early", "late", "plain"}

        # Past the default: only the sessions that chose longer keep their messages, also
        # after a later write has PRUNEd the expired vectors from storage.
        await asyncio.sleep(max(0.0, (_ms(first) + SHORT_S * 1000 + 1500) / 1000 - time.time()))
        assert time.time() * 1000 < _ms(first) + LONG_S * 1000 - 5000, "too slow to check"
        assert await found(reader) == {"early", "late"}
        prune = await p.append_message(LIVE_OWNER, "other", "user", "what about lunch")
        assert (await reader.wait(prune, timeout=30)).applied
        assert {"early", "late"} <= await found(reader)
        assert "plain" not in await found(reader)
