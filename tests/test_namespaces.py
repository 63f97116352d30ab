"""Shared namespaces: a reader opened with ``shared=[...]`` searches its namespaces too,
never another owner's keys, and never a namespace's working memory; a forget deletes
nothing of anyone else. Proved with MONITOR (every key a query touches) and a keyspace
diff before and after."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

from memstream.producers import AsyncProducer, EpisodeSaved, KnowledgeLearned, keys
from memstream.projections.reader import AsyncReader
from memstream.projections.working import working_key
from memstream.workers.cli import main
from tests.test_forget import keyspace
from tests.workers_util import running_worker

AGENT, TEAM = "agent.ada", "team.alpha"
STRANGERS = ("agent.bob", "team.beta", "agent.ada2")
"""Not shared with the agent; ``agent.ada2`` also matches the agent's SCAN glob."""


def names(owner: str) -> re.Pattern[bytes]:
    return re.compile(
        rb"(?<![A-Za-z0-9._@+=\-])" + re.escape(owner.encode()) + rb"(?![A-Za-z0-9._@+=\-])"
    )


@contextmanager
def monitored(url: str) -> Iterator[list[str]]:
    """Every command the server runs inside the block (MONITOR, from another thread)."""
    seen: list[str] = []
    client = redis.Redis.from_url(url)
    ready = threading.Event()

    def listen() -> None:
        with client.monitor() as m:  # type: ignore[no-untyped-call]
            ready.set()
            for command in m.listen():
                if command["command"] == "ECHO monitor-stop":
                    return
                seen.append(command["command"])

    thread = threading.Thread(target=listen)
    thread.start()
    ready.wait(5)
    try:
        yield seen
    finally:
        client.echo("monitor-stop")
        thread.join(10)
        client.close()


async def populate(url: str) -> None:
    settings = {"embed_messages": True}  # message vectors are opt-in
    async with AsyncProducer.from_url(url) as producer, running_worker(url, settings=settings) as _:
        last = None
        for owner in (AGENT, TEAM, *STRANGERS):
            await producer.append(
                owner, EpisodeSaved(episode_id="e1", task=f"deploy the rocket for {owner}")
            )
            await producer.append(
                owner, KnowledgeLearned(knowledge_id="k1", description="rocket fuel is volatile")
            )
            await producer.record_step(owner, "check rocket", session="s1")
            last = await producer.append_message(owner, "s1", "user", "rocket launch today")
        async with AsyncReader.from_url(url) as reader:
            assert last is not None
            await reader.wait(last, timeout=15)
            for owner in (AGENT, TEAM, *STRANGERS):
                found = await reader.search(owner, "rocket")
                assert found["total"] >= 2, (owner, found)


async def test_namespace_queries_touch_only_the_agent_and_its_namespaces(
    deployed: str, r: redis.Redis
) -> None:
    await populate(deployed)
    before = keyspace(r)
    async with AsyncReader.from_url(deployed, shared=[TEAM], embed_messages=True) as reader:
        await reader.deployment()  # not under MONITOR: meta is not an owner's key
        with monitored(deployed) as seen:
            found = await reader.search(AGENT, "rocket")
            meaning = await reader.search(AGENT, "spaceship propellant", mode="semantic")
            await reader.search_messages(AGENT, "rocket", mode="hybrid")
            everything = await reader.search_all(AGENT, "rocket volatile", limit=50)
            context = await reader.context(AGENT, "rocket", budget_chars=2000)
            await reader.working(AGENT)
            await reader.history(AGENT, "s1")
            await reader.state(AGENT)
    assert {h["owner"] for h in found["hits"]} == {AGENT, TEAM}
    assert {h["owner"] for h in everything["hits"]} == {AGENT, TEAM}
    assert {h["owner"] for h in meaning["hits"]} == {AGENT, TEAM}
    assert any(":vec:" in c and names(TEAM).search(c.encode()) for c in seen)
    assert context["text"]
    assert keyspace(r) == before, "a read changed the keyspace"
    assert len(seen) > 5 and any(names(TEAM).search(c.encode()) for c in seen)
    for stranger in STRANGERS:
        touched = [c for c in seen if names(stranger).search(c.encode())]
        assert touched == [], f"{stranger}'s keys were read: {touched[:3]}"
    team_working = working_key(keys.Projection(keys.partition(TEAM, 16), 1), TEAM)
    assert not [c for c in seen if team_working in c], "a namespace's working memory was read"


def _without(value: Any, owner: re.Pattern[bytes]) -> Any:
    """A shared key's content minus the parts that name ``owner`` (fields, entries)."""
    kind, content = value
    if kind == "hash":
        return kind, {k: v for k, v in content.items() if not owner.search(k)}
    if kind == "stream":
        return kind, [e for e in content if not owner.search(repr(e[1]).encode())]
    return value


async def test_forget_deletes_nothing_of_anyone_else(deployed: str, r: redis.Redis) -> None:
    await populate(deployed)
    agent = names(AGENT)
    before = keyspace(r)
    assert main(["forget", AGENT, "--yes", "--redis-url", deployed]) == 0
    after = keyspace(r)
    assert set(after) - set(before) == {keys.forget_audit().encode()}
    kept = {k: v for k, v in before.items() if not agent.search(k)}
    assert len(kept) > 20
    for owner in (AGENT, TEAM, *STRANGERS):  # the vectors are in the diff
        assert any(b":vec:" in k and names(owner).search(k) for k in before), owner
    for key, value in kept.items():
        # A shared key (heads, a feed) holding only the agent's parts goes with them.
        mine_only = _without(value, agent)[1] in ({}, [])
        assert key in after or mine_only, f"forget deleted {key!r}, which is not the agent's"
        if key in after:
            assert _without(after[key], agent) == _without(value, agent), key
    assert not [k for k in after if agent.search(k) or agent.search(repr(after[k]).encode())]
    async with AsyncReader.from_url(deployed) as reader:
        for owner in (TEAM, *STRANGERS):
            assert (await reader.search(owner, "rocket"))["total"] >= 2
