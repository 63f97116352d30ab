"""Incremental refresh of a reader's cached vector matrices from the change stream
``vec_c``: a warm matrix follows new, updated, deleted and expiring vectors without a
whole load, falls back to one when the stream cannot vouch for the changes (trimmed past
the matrix's mark, too many changes, a write that recorded none, a forget), and the
patched matrix always equals a fresh load of the hash, whatever the order of writes.

That the stream itself converges (one entry per applied write, duplicates gated, in any
delivery order) is checked by the harness with the projection's other keys
(tests/test_vectors_projection.py: the harness compares streams by their entries)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import redis

from memstream.producers import events as ev
from memstream.producers import keys
from memstream.producers.entry import StoredEvent
from memstream.producers.events_live import TtlExtended
from memstream.producers.events_memory import MemoryDeleted
from memstream.producers.events_messages import MessageAppended
from memstream.producers.settings import Settings
from memstream.projections import vector_index
from memstream.projections.base import ApplyContext
from memstream.projections.ops import Writes, write_command
from memstream.projections.reader import VERSION_TTL_S, AsyncReader
from memstream.projections.vector_index import Space, VectorCache, matrices
from memstream.projections.vector_matrix import Matrix
from memstream.projections.vectors import MESSAGE, Vectors, change_key, space_of, vector_key
from memstream.workers.cli import main
from tests.test_vectors_projection import Counting

OWNER = "agent.ada"
SPACE = Space(space_of("counting", 8), "counting", 8)
T0 = int(time.time() * 1000) - 60_000


class Writer:
    """Folds events of OWNER through the vector projection and ``ms_write``, log ids in
    the order given (so a test can apply an older event late)."""

    def __init__(self, r: redis.Redis, settings: Settings | None = None) -> None:
        self.r, self.settings = r, settings or Settings()
        self.vectors = Vectors(Counting())
        self.seq = 0
        meta: Any = r.hgetall(keys.META)
        self.pk = keys.Projection(keys.partition(OWNER, int(meta[b"partitions"])),
                                  int(meta[b"version"]))  # fmt: skip

    def event(
        self, event: Any, *, at: int | None = None, session: str | None = None
    ) -> StoredEvent:
        self.seq += 1
        return StoredEvent(OWNER, f"{T0 + (self.seq if at is None else at)}-0", event.TYPE,
                           event.VERSION, event, session)  # fmt: skip

    def ops(self, stored: StoredEvent) -> list[Any]:
        writes = Writes()
        ctx = ApplyContext(self.pk, self.settings, int(time.time() * 1000))
        self.vectors.apply(stored, ctx, writes)
        return writes.ops

    def fold(self, events: Sequence[StoredEvent], *, drop: str = "") -> None:
        batches = [[op for op in self.ops(e) if op[0] != drop] for e in events]
        call: Any = self.r.execute_command
        call(*write_command(batches))

    def save(self, *items: tuple[str, str]) -> None:
        self.fold([self.event(ev.EpisodeSaved(episode_id=i, task=t)) for i, t in items])


def saved(item_id: str, text: str) -> ev.EpisodeSaved:
    return ev.EpisodeSaved(episode_id=item_id, task=text)


async def matrix(reader: AsyncReader, cache: VectorCache, kind: str = "episode") -> Matrix | None:
    pk = await reader._pk(OWNER)
    found = await reader.run(matrices(cache, [(OWNER, pk)], [kind], SPACE))
    return found[0].matrix


def rows(m: Matrix | None) -> dict[str, tuple[list[float], int]]:
    """The matrix's rows that are not deleted, by ref (row order aside)."""
    if m is None:
        return {}
    assert len(m.refs) == len(m.rows) == len(m.expiry)
    return {ref: (m.rows[i].round(6).tolist(), int(m.expiry[i]))
            for i, ref in enumerate(m.refs) if m.expiry[i] != 0}  # fmt: skip


async def fresh(reader: AsyncReader, kind: str = "episode") -> dict[str, tuple[list[float], int]]:
    return rows(await matrix(reader, VectorCache(), kind))


@pytest.mark.topologies  # the reads pipeline on one node of a Cluster too (one slot)
async def test_a_warm_matrix_follows_writes_without_loading_again(
    deployed: str, r: redis.Redis
) -> None:
    w = Writer(r)
    w.save(*[(f"e{i}", f"fact number {i}") for i in range(5)])
    cache = VectorCache()
    async with AsyncReader.from_url(deployed) as reader:
        first = await matrix(reader, cache)
        assert first is not None and len(first.refs) == 5 and cache.loads == 1
        old_e2 = rows(first)["e2"]
        w.save(("e5", "a brand new memory"), ("e2", "fact number two, rewritten"))
        w.fold([w.event(MemoryDeleted(kind="episode", item_id="e3"))])
        now = await matrix(reader, cache)
        assert (cache.loads, cache.patches) == (1, 1), "patched, not loaded again"
        assert rows(now) == await fresh(reader)
        assert set(rows(now)) == {"e0", "e1", "e2", "e4", "e5"}
        assert rows(now)["e2"] != old_e2
        assert len(first.refs) == len(first.rows) == 5, "the older snapshot keeps its refs"
        assert first.expiry[first.refs.index("e3")] == 0, "a delete masks every snapshot"
        again = await matrix(reader, cache)
        assert again is now and (cache.loads, cache.patches) == (1, 1), "unchanged: as is"
        w.save(("e3", "back again"))  # a newer save brings a deleted item back
        assert set(rows(await matrix(reader, cache))) == {"e0", "e1", "e2", "e3", "e4", "e5"}
        assert (cache.loads, cache.patches) == (1, 2)
        assert rows(await matrix(reader, cache)) == await fresh(reader)


async def test_concurrent_searches_patch_once_and_agree(deployed: str, r: redis.Redis) -> None:
    w = Writer(r)
    w.save(*[(f"e{i}", f"fact {i}") for i in range(4)])
    cache = VectorCache()
    async with AsyncReader.from_url(deployed) as reader:
        await matrix(reader, cache)
        for n in range(3):
            w.save((f"n{n}", f"appended {n}"), ("e1", f"rewritten {n}"))
            both = await asyncio.gather(matrix(reader, cache), matrix(reader, cache))
            want = await fresh(reader)
            assert rows(both[0]) == rows(both[1]) == want
        assert cache.loads == 1 and cache.patches == 3, "the second search used the first's"


async def test_late_older_writes_converge(deployed: str, r: redis.Redis) -> None:
    """Writes of random items in random log order (older events applied late, LWW drops
    them), with reader checks in between: the patched matrix always equals a fresh load."""
    rng = random.Random(7)
    w = Writer(r)
    cache = VectorCache()
    async with AsyncReader.from_url(deployed) as reader:
        w.save(("e0", "the first memory"))
        await matrix(reader, cache)
        stamps = list(range(1000, 1300))
        rng.shuffle(stamps)
        for round_ in range(25):
            events = []
            for _ in range(rng.randint(1, 6)):
                item = f"e{rng.randrange(8)}"
                at = stamps.pop()
                if rng.random() < 0.25:
                    events.append(w.event(MemoryDeleted(kind="episode", item_id=item), at=at))
                else:
                    events.append(w.event(saved(item, f"{item} said {at} {round_}"), at=at))
            w.fold(events)
            assert rows(await matrix(reader, cache)) == await fresh(reader), round_
        assert cache.loads == 1 and cache.patches >= 20


async def test_a_trimmed_stream_or_too_many_changes_loads_the_whole_hash(
    deployed: str, r: redis.Redis, monkeypatch: Any
) -> None:
    w = Writer(r)
    w.save(*[(f"e{i}", f"fact {i}") for i in range(3)])
    cache = VectorCache()
    async with AsyncReader.from_url(deployed) as reader:
        await matrix(reader, cache)
        # 600 writes of one hash of 4 refs: the stream keeps about 256 (its floor), so
        # the matrix's mark is trimmed away.
        w.fold([w.event(saved(f"e{i % 4}", f"version {i}")) for i in range(600)])
        ck = change_key(w.pk, OWNER, SPACE.id, "episode")
        assert r.xlen(ck) < 600
        assert rows(await matrix(reader, cache)) == await fresh(reader)
        assert (cache.loads, cache.patches) == (2, 0)

        monkeypatch.setattr(vector_index, "PATCH_MAX", 3)
        w.save(*[(f"e{i}", f"later {i}") for i in range(4)])
        assert rows(await matrix(reader, cache)) == await fresh(reader)
        assert (cache.loads, cache.patches) == (3, 0), "four changes, three at most"
        w.save(*[(f"e{i}", f"last {i}") for i in range(3)])
        assert rows(await matrix(reader, cache)) == await fresh(reader)
        assert (cache.loads, cache.patches) == (3, 1)


async def test_a_write_that_records_no_change_loads_the_whole_hash(
    deployed: str, r: redis.Redis
) -> None:
    """A writer without the change stream (a worker of an older release, mid-upgrade)
    still counts its write in ``vec_meta``: the count outruns the entries."""
    w = Writer(r)
    w.save(("e0", "one"), ("e1", "two"))
    cache = VectorCache()
    async with AsyncReader.from_url(deployed) as reader:
        await matrix(reader, cache)
        w.fold([w.event(saved("e1", "two, quietly rewritten"))], drop="VCHG")
        w.save(("e2", "three"))  # a recorded change after the unrecorded one
        assert rows(await matrix(reader, cache)) == await fresh(reader)
        assert (cache.loads, cache.patches) == (2, 0)


async def test_forget_and_a_new_stream_load_the_whole_hash(deployed: str, r: redis.Redis) -> None:
    w = Writer(r)
    w.save(*[(f"e{i}", f"fact {i}") for i in range(4)])
    cache = VectorCache()
    async with AsyncReader.from_url(deployed) as reader:
        await matrix(reader, cache)
        assert main(["forget", OWNER, "--yes", "--redis-url", deployed]) == 0
        assert await matrix(reader, cache) is None, "forgotten: no vectors"
        assert cache.peek(vector_key(w.pk, OWNER, SPACE.id, "episode")) is None, "none kept"
        # As many writes again as before: the stream is a new one, its ids newer than
        # the matrix's mark, so the mark is not found and the hash is loaded whole.
        w.save(*[(f"n{i}", f"new fact {i}") for i in range(5)])
        now = await matrix(reader, cache)
        assert set(rows(now)) == {f"n{i}" for i in range(5)}
        assert (cache.loads, cache.patches) == (2, 0)


async def test_expiry_and_a_ttl_extension_follow_without_a_reload(
    deployed: str, r: redis.Redis
) -> None:
    config = Settings(embed_messages=True, history_ttl_s=3600)
    w = Writer(r, config)
    messages = [w.event(MessageAppended(role="user", content=f"message {i}"), session="s1")
                for i in range(3)]  # fmt: skip
    w.fold(messages)
    cache = VectorCache()
    async with AsyncReader.from_url(deployed, embed_messages=True) as reader:
        before = rows(await matrix(reader, cache, MESSAGE))
        w.fold([w.event(TtlExtended(seconds=7200), session="s1")])
        after = rows(await matrix(reader, cache, MESSAGE))
        assert after == await fresh(reader, MESSAGE)
        assert (cache.loads, cache.patches) == (1, 1)
        assert all(after[ref][1] > before[ref][1] for ref in before), "every row raised"


def test_an_older_snapshot_keeps_its_rows_through_appends_and_compaction() -> None:
    from memstream.projections.ops import sortable
    from memstream.projections.vector_codec import encode
    from memstream.projections.vector_matrix import Mark, load, newest, patch

    def value(n: int) -> bytes:
        v = np.zeros(8, np.float32)
        v[n % 8] = 1.0
        return sortable(f"{T0 + n}-0").encode() + encode(v, T0 + 10**9)

    mark = Mark(b"1-0", (b"r", b"x"), 0)
    base = load({f"r{i}".encode(): value(i) for i in range(3)}, 8, (b"3", b"v"), mark)
    grown = patch(base, {f"r{i}": value(i) for i in range(3, 40)}, 8, (b"40", b"v"), mark)
    assert len(base.refs) == len(base.rows) == 3 and len(grown.refs) == len(grown.rows) == 40
    assert not newest(base) and newest(grown)
    assert [int(np.argmax(grown.rows[i])) for i in range(40)] == [i % 8 for i in range(40)]
    gone = patch(grown, {f"r{i}": None for i in range(15)}, 8, (b"55", b"v"), mark)
    assert gone.refs == [f"r{i}" for i in range(15, 40)], "compacted past a quarter"
    assert grown.expiry[:15].tolist() == [0] * 15, "masked in the older snapshot"
    assert [int(np.argmax(gone.rows[i])) for i in range(25)] == [i % 8 for i in range(15, 40)]


async def test_the_worker_and_reader_search_patch_and_replay_reloads(
    deployed: str, r: redis.Redis
) -> None:
    """End to end: a real worker's ack-gated apply writes the change record, and
    ``Reader.search`` patches its matrix from it; a replay moves to new keys: a load."""
    from memstream.producers import AsyncProducer
    from memstream.workers.replay import replay_all
    from tests.workers_util import running_worker

    async with (
        running_worker(deployed),
        AsyncProducer.from_url(deployed) as producer,
        AsyncReader.from_url(deployed) as reader,
    ):
        for i, text in enumerate(["the disk is full", "the invoice is late", "logo is blue"]):
            last = await producer.append(OWNER, saved(f"e{i}", text))
        await reader.wait(last, timeout=30)
        first = await reader.search(OWNER, "storage ran out", mode="semantic", limit=3)
        cache: VectorCache = reader.__dict__["_vector_state"].cache
        assert cache.loads == 1 and first["hits"][0]["id"] == "e0"
        await reader.wait(await producer.append(OWNER, saved("e3", "no space left on the volume")),
                          timeout=30)  # fmt: skip
        second = await reader.search(OWNER, "storage ran out", mode="semantic", limit=4)
        assert (cache.loads, cache.patches) == (1, 1)
        assert {h["id"] for h in second["hits"]} == {"e0", "e1", "e2", "e3"}
        pk = await reader._pk(OWNER)
        assert r.xlen(change_key(pk, OWNER, reader.__dict__["_vector_state"].space.id,
                                 "episode")) == 4  # fmt: skip
        await asyncio.to_thread(replay_all, r, Settings.from_url(deployed),
                                catchup_timeout_s=10, grace_s=0.0)  # fmt: skip
        await asyncio.sleep(VERSION_TTL_S + 0.1)  # the reader sees the flip
        third = await reader.search(OWNER, "storage ran out", mode="semantic", limit=4)
        assert cache.loads == 2, "the replayed version's keys: loaded whole"
        assert [h["id"] for h in third["hits"]] == [h["id"] for h in second["hits"]]
