"""A projection defined only in this file: its event, its keys, its apply and its section
of ``Reader.context``. It passes the shipped convergence harness, a real ``memstream worker
--projections`` process folds it, ``memstream replay --projections`` rebuilds it in the
next version, and a reader given it fills its context section."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from typing import Any, ClassVar

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memstream.producers import Producer, keys
from memstream.producers.entry import StoredEvent
from memstream.producers.errors import ConfigError
from memstream.producers.events import Event, register
from memstream.projections.base import ApplyContext, Projection, Query, then
from memstream.projections.codec import pack, split_versioned
from memstream.projections.context import ContextSection
from memstream.projections.ops import Writes, sortable
from memstream.projections.reader import AsyncReader, Reader
from memstream.projections.registry import load, stats_types, with_extra
from memstream.projections.testing import check_convergence, event_streams, with_deliveries
from tests.workers_util import spawn_worker, stop_worker, wait_until

SPEC = "tests.test_custom_projection:Pins"


@register
class NotePinned(Event):
    """An agent pinned a note: the newest text of a note id wins."""

    TYPE: ClassVar[str] = "note.pinned"
    note_id: str
    text: str


def pins_key(pk: keys.Projection, owner: str) -> str:
    return pk.key("pins", owner)


def pin_section(pk: keys.Projection, owner: str, query: str) -> Query[list[dict[str, str]]]:
    """The context section's read: the owner's pins, those naming a word of the query
    first."""
    words = set(query.lower().split())

    def rank(pins: dict[str, str]) -> list[dict[str, str]]:
        found = [{"note_id": k, "text": v} for k, v in sorted(pins.items())]
        return sorted(found, key=lambda p: not words & set(p["text"].lower().split()))

    return then(read_pins(pk, owner), rank)


class Pins(Projection):
    name: ClassVar[str] = "pins"
    handles: ClassVar[frozenset[str]] = frozenset({NotePinned.TYPE})
    key_names: ClassVar[frozenset[str]] = frozenset({"pins"})
    context: ClassVar[ContextSection | None] = ContextSection(
        "pins", "Pinned notes", lambda pin: f"{pin['note_id']}: {pin['text']}", 5, pin_section
    )

    def apply(self, event: StoredEvent, ctx: ApplyContext, writes: Writes) -> None:
        pin = event.event
        assert isinstance(pin, NotePinned)
        # Last writer wins by log id: any delivery order gives the newest text.
        writes.lww(pins_key(ctx.keys, event.owner), pin.note_id, sortable(event.log_id),
                   pack(pin.text))  # fmt: skip


def read_pins(pk: keys.Projection, owner: str) -> Query[dict[str, str]]:
    key = pins_key(pk, owner)

    def parse(replies: list[Any]) -> dict[str, str]:
        return {k.decode(): split_versioned(v)[1] for k, v in replies[0].items()}

    return Query([("HGETALL", key)], parse, (key,))


async def pins_of(url: str, owner: str) -> dict[str, str]:
    """The read docs/extending.md shows: a query plan run by the AsyncReader."""
    async with AsyncReader.from_url(url) as reader:
        d = await reader.deployment()
        pk = keys.Projection(keys.partition(owner, d.partitions), d.version)
        return await reader.run(read_pins(pk, owner))


def pins(r: redis.Redis, owner: str) -> dict[str, str]:
    meta = r.hgetall(keys.META)
    version, partitions = int(meta[b"version"]), int(meta[b"partitions"])
    pk = keys.Projection(keys.partition(owner, partitions), version)
    raw: Any = r.hgetall(pins_key(pk, owner))
    return {k.decode(): split_versioned(v)[1] for k, v in raw.items()}


NOW = int(time.time() * 1000) + 3_600_000  # ahead of the Redis clock (see the harness)
PINS = st.builds(NotePinned, note_id=st.sampled_from(["n1", "n2"]), text=st.text(max_size=8))


@settings(
    deadline=None, max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(with_deliveries(event_streams(kinds=["note.pinned"], payloads={"note.pinned": PINS},
                                     start_ms=NOW - 60_000)))  # fmt: skip
def test_it_converges_with_the_shipped_harness(deployed: str, r: redis.Redis, case: Any) -> None:
    events, (order, duplicates, batch_sizes) = case
    check_convergence(r, [Pins()], events, order=order, duplicates=duplicates,
                      batch_sizes=batch_sizes, now_ms=NOW)  # fmt: skip


def test_the_registry_derives_stats_and_checks_clashes() -> None:
    assert [p.name for p in load(SPEC)] == ["pins"]
    projections = with_extra([SPEC])
    assert stats_types(projections)["pins"] == "pins"
    assert stats_types(projections)["hist"] == "history"

    class Clash(Pins):
        name: ClassVar[str] = "clash"
        key_names: ClassVar[frozenset[str]] = frozenset({"hist"})

    with pytest.raises(ConfigError, match="'hist'"):
        stats_types([*projections, Clash()])
    with pytest.raises(ConfigError, match="used twice"):
        with_extra([SPEC, SPEC])
    with pytest.raises(ConfigError, match=r"package\.module:attr"):
        load("no-colon")
    with pytest.raises(ConfigError, match="no attribute"):
        load("tests.test_custom_projection:Missing")


def test_a_worker_process_folds_it_and_replay_rebuilds_it(
    deployed: str, r: redis.Redis, tmp_path: Any
) -> None:
    owner = "agent.pin"
    worker = spawn_worker(deployed, "wpin", "--projections", SPEC, log=tmp_path / "w.log")
    try:
        with Producer.from_url(deployed) as producer:
            producer.append(owner, NotePinned(note_id="n1", text="draft"))
            producer.append(owner, NotePinned(note_id="n2", text="todo"))
            producer.append(owner, NotePinned(note_id="n1", text="final"))
        wanted = {"n1": "final", "n2": "todo"}
        wait_until(lambda: pins(r, owner) == wanted, 20, "the worker to fold the pins")
        with Reader.from_url(deployed, projections=[Pins()]) as reader:
            ctx = reader.context(owner, "todo list", budget_chars=300)
            assert ctx["pins"] == [{"note_id": "n2", "text": "todo"},
                                   {"note_id": "n1", "text": "final"}]  # fmt: skip
            assert ctx.pins == ctx["pins"] and "pins" in ctx.to_dict()
            assert ctx.text.startswith("## Pinned notes\n- n2: todo\n- n1: final")
        with Reader.from_url(deployed) as reader:  # a reader not given it has no such section
            assert (
                "pins" not in reader.context(owner, "todo")
                and not reader.context(owner, "todo").text
            )
        assert r.hget(keys.Projection(keys.partition(owner, 16), 1).partition_key("stats"),
                      "unknown") is None  # fmt: skip
        out = subprocess.run(
            [sys.executable, "-m", "memstream.workers.cli", "replay", "--redis-url", deployed,
             "--yes", "--grace-s", "0.2", "--projections", SPEC],
            check=False, capture_output=True, text=True, timeout=90,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert int(r.hget(keys.META, "version")) == 2
        assert pins(r, owner) == wanted  # rebuilt in v2 from the log alone
        assert asyncio.run(pins_of(deployed, owner)) == wanted
    finally:
        assert stop_worker(worker) == 0
    assert "Traceback" not in (tmp_path / "w.log").read_text()


def test_a_bad_spec_is_one_line(deployed: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "memstream.workers.cli", "worker", "--redis-url", deployed,
         "--projections", "tests.nowhere:Pins"],
        check=False, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode != 0
    assert "tests.nowhere" in out.stderr and "Traceback" not in out.stderr
