"""Bad world-model input: clear errors at the producer, and raw-written bad evidence
dead-lettered with a readable reason while the valid evidence around it counts once."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import msgpack
import pytest
import redis

from memstream.producers import InvalidIdError, InvalidInputError, Producer, Receipt, keys
from memstream.producers.events import EvidenceObserved
from memstream.producers.world import World
from memstream.projections.reader import AsyncReader
from memstream.workers import dlq
from tests.test_wire_protocol import multi_fallback_append
from tests.workers_util import running_worker
from tests.world_util import Oracle

OWNER = "agent.world"
P = keys.partition(OWNER, 16)
PATH = ["office-3", "meeting-rooms", "building"]
VARIABLES = {"occupied": ["yes", "no"]}


@pytest.mark.parametrize(
    ("change", "field", "rule"),
    [
        ({"weight": 0.0}, "weight", "positive"),
        ({"weight": -1.5}, "weight", "positive"),
        ({"weight": math.nan}, "weight", "finite"),
        ({"weight": math.inf}, "weight", "finite"),
        ({"weight": 1e-12}, "weight", "1e-9"),
        ({"path": []}, "path", "at least 1"),
        ({"path": ["a", "b", "c", "d"]}, "path", "configured with 3"),
        ({"path": ["bad room", "b"]}, "path.0", "must be 1 to 200"),
        ({"outcome": "maybe"}, "outcome", "must be one of yes, no"),
        ({"variable": "lit"}, "variable", "is not configured in scenario smart_office"),
    ],
)
def test_producer_rejects_bad_evidence_naming_the_field(
    deployed: str, r: redis.Redis, change: dict[str, Any], field: str, rule: str
) -> None:
    with Producer.from_url(deployed) as producer:
        world = World(producer, OWNER, "smart_office")
        world.configure(VARIABLES, levels=3)
        args: dict[str, Any] = {"path": PATH, "variable": "occupied", "outcome": "yes"}
        args.update(change)
        with pytest.raises(InvalidInputError) as info:
            world.observe(args.pop("path"), args.pop("variable"), args.pop("outcome"), **args)
    assert info.value.field == field
    assert rule in str(info.value)
    assert r.xlen(keys.log(P, OWNER)) == 1  # the configuration only: nothing else went out


def test_producer_rejects_bad_ids_and_unconfigured_scenarios(deployed: str, r: redis.Redis) -> None:
    with Producer.from_url(deployed) as producer:
        with pytest.raises(InvalidIdError) as owner_error:
            World(producer, "bad owner!", "smart_office")
        assert owner_error.value.field == "owner"
        with pytest.raises(InvalidIdError) as scenario_error:
            World(producer, OWNER, "smart office")
        assert scenario_error.value.field == "scenario"
        event = EvidenceObserved(scenario="s", path=["a"], variable="v", outcome="o")
        with pytest.raises(InvalidIdError) as session_error:
            producer.append(OWNER, event, session="no/slashes")
        assert session_error.value.field == "session"
        with pytest.raises(InvalidInputError) as unconfigured:
            World(producer, OWNER, "never_configured").observe(["a"], "v", "o")
        assert unconfigured.value.field == "scenario"
        with pytest.raises(InvalidInputError) as config_error:
            World(producer, OWNER, "sc").configure({"v": ["only"]})
        assert config_error.value.field == "variables"
    assert r.xlen(keys.log(P, OWNER)) == 0


def _raw(r: redis.Redis, data: dict[str, Any], **extra: str) -> str:
    """Append with MULTI/XADD, bypassing every check; returns the log id."""
    return _raw_receipt(r, data, **extra).log_id


def _raw_receipt(r: redis.Redis, data: dict[str, Any], **extra: str) -> Receipt:
    """Append with MULTI/XADD, bypassing every check (the wire protocol's fallback)."""
    fields: dict[str, Any] = {"type": "evidence.observed", "data": msgpack.packb(data),
                              "ct": "msgpack", **extra}  # fmt: skip
    flat = [str(x) if not isinstance(x, bytes) else x for kv in fields.items() for x in kv]
    one: Any = r.client  # one connection: WATCH and MULTI are connection state
    with one() as conn:
        log_id, feed_id = multi_fallback_append(conn, OWNER, 16, flat)
    return Receipt(OWNER, P, log_id, feed_id)


def _evidence(**change: Any) -> dict[str, Any]:
    return {"scenario": "smart_office", "path": PATH, "variable": "occupied",
            "outcome": "yes", "weight": 1.0, **change}  # fmt: skip


BAD: list[tuple[dict[str, Any], str]] = [
    (_evidence(weight=-1.0), "data.weight"),
    (_evidence(weight=0.0), "data.weight"),
    (_evidence(weight=math.nan), "data.weight"),
    (_evidence(weight=math.inf), "data.weight"),
    (_evidence(path=[]), "data.path"),
    (_evidence(path=["a b"]), "data.path.0"),
    (_evidence(path=["a", "b", "c", "d"]), "path: has 4 levels, scenario smart_office is "
                                           "configured with 3"),
    (_evidence(outcome="maybe"), "outcome: maybe is not one of the outcomes of occupied in "
                                 "scenario smart_office (yes, no)"),
    (_evidence(variable="lit"), "variable: lit is not configured in scenario smart_office"),
]  # fmt: skip


async def test_raw_bad_evidence_is_dead_lettered_and_nothing_is_lost(
    deployed: str, r: redis.Redis
) -> None:
    good: list[EvidenceObserved] = []
    async with running_worker(deployed), AsyncReader.from_url(deployed) as reader:
        with Producer.from_url(deployed) as producer:
            world = World(producer, OWNER, "smart_office")
            assert (await reader.wait(world.configure(VARIABLES, levels=3))).applied
            bad_ids = []
            for i, (data, _) in enumerate(BAD):
                good.append(EvidenceObserved(**_evidence(weight=0.25 + i, outcome="no")))
                world.observe(PATH, "occupied", "no", 0.25 + i)
                bad_ids.append(_raw(r, data))
            # A session id that breaks the id rule, written raw: dead-lettered too.
            bad_ids.append(_raw(r, _evidence(), session="bad session"))
            last = world.observe(PATH[1:], "occupied", "yes", 0.5)
            good.append(EvidenceObserved(**_evidence(path=PATH[1:], weight=0.5)))
        assert (await reader.wait(last, timeout=20)).applied
        got = await reader.world_predict(OWNER, "smart_office", PATH, "occupied")
        letters = list(dlq.iter_entries(r, P))

        reasons = {d.log_id: d.reason for d in letters}
        needles = [needle for _, needle in BAD] + ["session"]
        assert len(letters) == len(needles)
        for log_id, needle in zip(bad_ids, needles, strict=True):
            assert needle in reasons[log_id], (needle, reasons[log_id])
        assert all(d.group == "v1" and d.owner == OWNER for d in letters)
        want = Oracle(["yes", "no"], 2.0, 1.0).predict(good, PATH)
        assert list(got.values()) == pytest.approx(list(want), abs=1e-12)

        # Nothing lost: reconfigure with the missing outcome, retry its dead letter, and
        # it counts (exactly once).
        with Producer.from_url(deployed) as producer:
            receipt = World(producer, OWNER, "smart_office").configure(
                {"occupied": ["yes", "no", "maybe"]}, levels=3
            )
        assert (await reader.wait(receipt)).applied
        maybe = next(d for d in letters if "outcome: maybe" in d.reason)
        (outcome,) = dlq.retry(r, [maybe])
        assert outcome.requeued, outcome.detail
        for _ in range(200):
            counts = r.hgetall(
                keys.Projection(P, 1).key("world", OWNER, "smart_office", "building")
            )
            if b"occupied:maybe" in counts:
                break
            await asyncio.sleep(0.02)
        assert counts[b"occupied:maybe"] == b"1000000000"
    assert int(r.hget(keys.Projection(P, 1).partition_key("stats"), "dlq") or 0) == len(needles)


async def test_wait_reports_a_raw_observation_the_world_model_rejects(
    deployed: str, r: redis.Redis
) -> None:
    # The rejection happens inside ms_apply (WOBS), not in the planner: its dead letter
    # must still name the feed entry, or wait() would call the event applied.
    async with running_worker(deployed), AsyncReader.from_url(deployed) as reader:
        with Producer.from_url(deployed) as producer:
            world = World(producer, OWNER, "smart_office")
            assert (await reader.wait(world.configure(VARIABLES, levels=3))).applied
        receipt = _raw_receipt(r, _evidence(outcome="maybe"))
        result = await reader.wait(receipt, timeout=20)
    assert result.status == "dead_lettered"
    assert result.reason is not None
    assert "outcome: maybe is not one of the outcomes" in result.reason
