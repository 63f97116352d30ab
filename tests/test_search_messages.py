"""Conversation search: keyword (stemmed BM25) and semantic over sessions' histories."""

from __future__ import annotations

import pytest

from memstream.producers import AsyncProducer, InvalidInputError
from memstream.projections.reader import AsyncReader, Reader
from memstream.projections.reads_vectors import MessageHit, bm25
from tests.workers_util import running_worker

OWNER = "agent.ada"


def test_bm25_prefers_the_rarer_term_and_stems() -> None:
    texts = ["the trains to Sintra", "a train to Porto", "lunch in Lisbon"]
    scores = bm25("Sintra train", texts)
    assert scores[0] > scores[1] > 0 and scores[2] == 0
    assert bm25("", texts) == [0.0, 0.0, 0.0]


async def test_search_messages_by_keyword_and_meaning(deployed: str) -> None:
    # Message vectors are opt-in (Settings.embed_messages): on for worker and reader.
    async with (
        running_worker(deployed, settings={"embed_messages": True}),
        AsyncProducer.from_url(deployed) as producer,
    ):
        await producer.append_message(OWNER, "s1", "user", "Which trains go to Sintra?")
        await producer.append_message(OWNER, "s1", "assistant", "The Rossio line, hourly.")
        await producer.append_message(
            OWNER, "s2", "user", [{"type": "text", "text": "book a train ticket to Sintra"}]
        )
        last = await producer.append_message(OWNER, "s2", "user", "my database ran out of disk")
        async with AsyncReader.from_url(deployed, embed_messages=True) as reader:
            await reader.wait(last, timeout=30)
            hits = await reader.search_messages(OWNER, "Sintra train")
            assert all(isinstance(h, MessageHit) for h in hits)
            assert {(h.session, h.message["role"]) for h in hits} == {
                ("s1", "user"),
                ("s2", "user"),
            }
            assert all(h.score > 0 for h in hits)
            only = await reader.search_messages(OWNER, "sintra", session="s1")
            assert [h.message["content"] for h in only] == ["Which trains go to Sintra?"]
            near = await reader.search_messages(OWNER, "storage full", mode="semantic", limit=1)
            assert near[0].message["content"] == "my database ran out of disk"
            assert await reader.search_messages(OWNER, "x", session="nobody") == []
            with pytest.raises(InvalidInputError, match="mode"):
                await reader.search_messages(OWNER, "x", mode="fuzzy")
            with pytest.raises(InvalidInputError, match="limit"):
                await reader.search_messages(OWNER, "x", limit=0)
    with Reader.from_url(deployed, embed_messages=True) as sync_reader:
        assert [h.log_id for h in sync_reader.search_messages(OWNER, "Sintra train")] == [
            h.log_id for h in hits
        ]
