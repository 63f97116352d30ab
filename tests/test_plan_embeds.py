"""Planner.embeds: a batch hops to a thread for bulk embedding only when it has work.

Every batch used to go to a thread for ``Vectors.prepare_batch``, even one it skips
entirely (messages with ``embed_messages`` off). ``embeds`` must say yes exactly where
``prepare_batch`` would embed: otherwise either the hop is wasted or (worse for speed,
not for results) vectors are made one by one at apply time.
"""

from __future__ import annotations

from memstream.producers.settings import Settings
from memstream.projections.registry import default_projections
from memstream.projections.vectors import ITEM_TYPES
from memstream.workers.plan import Fields, Planner

MESSAGE = "message.appended"


def planner(settings: Settings) -> Planner:
    return Planner(default_projections(), settings, 5)


def logs(*types: str | None) -> dict[str, Fields | None]:
    return {
        f"1-{i}": (None if t is None else {b"type": t.encode(), b"data": b"\x80"})
        for i, t in enumerate(types)
    }


def test_a_batch_of_messages_is_not_embedded_by_default() -> None:
    settings = Settings(embedder="wordllama")
    assert not settings.embed_messages
    assert not planner(settings).embeds(settings, logs(MESSAGE, MESSAGE, None))


def test_an_item_in_the_batch_is_embedded() -> None:
    settings = Settings(embedder="wordllama")
    for item in sorted(ITEM_TYPES):
        assert planner(settings).embeds(settings, logs(MESSAGE, item)), item


def test_messages_are_embedded_when_asked() -> None:
    settings = Settings(embedder="wordllama", embed_messages=True)
    assert planner(settings).embeds(settings, logs(MESSAGE))


def test_nothing_is_embedded_without_an_embedder() -> None:
    settings = Settings(embedder="none", embed_messages=True)
    every = [MESSAGE, *sorted(ITEM_TYPES)]
    assert not planner(settings).embeds(settings, logs(*every))


def test_missing_entries_and_unknown_types_are_not_embedded() -> None:
    settings = Settings(embedder="wordllama", embed_messages=True)
    assert not planner(settings).embeds(settings, logs(None, "custom.thing"))
    assert not planner(settings).embeds(settings, {})
