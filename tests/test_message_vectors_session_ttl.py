"""Message vectors follow their session's chosen TTL (docs/ttl.md): once a session's
history has expired, semantic (and hybrid) message search no longer returns its
messages; a ``ttl.extended`` keeps them, a newer message slides the whole session's life
(an older message stays while its session lives), and a replay after expiry does not
bring them back."""

from __future__ import annotations

import asyncio
import time

import redis

from memstream.producers import AsyncProducer, Receipt, Settings, TtlExtended
from memstream.projections.reader import AsyncReader
from memstream.workers.replay import replay_all
from tests.workers_util import running_worker

OWNER = "agent.vttl"
EMBED = {"embed_messages": True}
SHORT_S, SLIDE_S = 2, 5


def _ms(receipt: Receipt) -> int:
    return int(receipt.log_id.split("-")[0])


async def _until(ms: int) -> None:
    await asyncio.sleep(max(0.0, ms / 1000 - time.time()))


async def _found(reader: AsyncReader, session: str | None = None) -> set[tuple[str, str]]:
    """(session, content) of every live message vector (the limit exceeds them all)."""
    hits = await reader.search_messages(OWNER, "storage full disk", session, mode="semantic",
                                        limit=100)  # fmt: skip
    return {(h.session, h.message["content"]) for h in hits}


async def test_message_vectors_follow_the_sessions_chosen_ttl(
    r: redis.Redis, deployed: str
) -> None:
    settings = Settings.from_url(deployed, **EMBED)
    async with (
        running_worker(deployed, settings=EMBED),
        AsyncProducer.from_url(deployed) as p,
        AsyncReader.from_settings(settings) as reader,
    ):
        await p.start_session(OWNER, "short", ttl_s=SHORT_S)
        short = await p.append_message(OWNER, "short", "user", "my database ran out of disk")
        await p.start_session(OWNER, "ext", ttl_s=SHORT_S)
        await p.append_message(OWNER, "ext", "user", "the storage volume is full")
        await p.append(OWNER, TtlExtended(seconds=600), session="ext")
        await p.start_session(OWNER, "slide", ttl_s=SLIDE_S)
        first = await p.append_message(OWNER, "slide", "user", "the disk filled up overnight")
        kept = await p.append_message(OWNER, "keep", "user", "disk quota exceeded")  # no TTL
        assert (await reader.wait(kept, timeout=60)).applied
        assert {s for s, _ in await _found(reader)} == {"short", "ext", "slide", "keep"}

        await _until(_ms(first) + 3000)
        later = await p.append_message(OWNER, "slide", "user", "what about lunch")
        assert (await reader.wait(later, timeout=30)).applied
        # "short" has expired; "slide"'s first message is past its own time + TTL, but
        # its session lives on from the newer message (sliding).
        await _until(max(_ms(short) + SHORT_S * 1000, _ms(first) + SLIDE_S * 1000) + 400)
        assert time.time() * 1000 < _ms(later) + SLIDE_S * 1000 - 500, "too slow to check"
        found = await _found(reader)
        assert {s for s, _ in found} == {"ext", "slide", "keep"}
        assert ("slide", "the disk filled up overnight") in found
        assert await _found(reader, "short") == set()
        fused = await reader.search_messages(OWNER, "database disk", mode="hybrid", limit=100)
        assert "short" not in {h.session for h in fused}

        await _until(_ms(later) + SLIDE_S * 1000 + 400)
        assert {s for s, _ in await _found(reader)} == {"ext", "keep"}

    summary = await asyncio.to_thread(replay_all, r, settings, grace_s=0.2, catchup_timeout_s=30)
    assert summary.to_version == 2
    async with AsyncReader.from_settings(settings) as reader:
        # The replay re-embedded every message; the expired sessions stay gone.
        assert {s for s, _ in await _found(reader)} == {"ext", "keep"}


async def test_a_session_used_again_after_expiry_keeps_its_old_messages_out(
    deployed: str,
) -> None:
    settings = Settings.from_url(deployed, **EMBED)
    async with (
        running_worker(deployed, settings=EMBED),
        AsyncProducer.from_url(deployed) as p,
        AsyncReader.from_settings(settings) as reader,
    ):
        await p.start_session(OWNER, "back", ttl_s=1)
        old = await p.append_message(OWNER, "back", "user", "my database ran out of disk")
        assert (await reader.wait(old, timeout=60)).applied
        await _until(_ms(old) + 1300)
        new = await p.append_message(OWNER, "back", "user", "the storage volume is full")
        assert (await reader.wait(new, timeout=30)).applied
        assert [m["content"] for m in await reader.history(OWNER, "back")] == [
            "the storage volume is full"
        ]
        assert await _found(reader) == {("back", "the storage volume is full")}
