"""The world model's maths against numpy/scipy, the worked example of docs/world-model.md,
summaries, and the producer -> worker -> reader path.

Counts go through the real WOBS op (``ms_write``, as replay folds) and are read back by the
real Reader; the oracle recomputes everything from the event list with numpy and scipy.
"""

from __future__ import annotations

import math
import random

import pytest
import redis
from scipy import special  # type: ignore[import-untyped]

from memstream.producers import Producer, keys
from memstream.producers.events import EvidenceObserved
from memstream.producers.events_world import WorldConfigured
from memstream.producers.world import World
from memstream.projections.reader import AsyncReader, Reader
from memstream.projections.world_math import beta_cdf, beta_ppf
from tests.workers_util import running_worker
from tests.world_util import Oracle, fold, stored

TOL = 1e-9


def test_weights_have_nano_resolution() -> None:
    rng = random.Random(3)
    for _ in range(2000):
        raw = rng.uniform(1e-9, 1e6) if rng.random() < 0.5 else rng.uniform(0.001, 3)
        event = EvidenceObserved(scenario="s", path=["a"], variable="v", outcome="o", weight=raw)
        assert abs(event.weight - raw) <= 5e-10 + 2 * math.ulp(raw)
        nano = round(event.weight * 1e9)
        assert nano / 1e9 == event.weight  # what is summed is exactly what is logged


def test_beta_quantiles_and_cdf_match_scipy() -> None:
    rng = random.Random(11)
    for _ in range(3000):
        a, b = 10 ** rng.uniform(-2, 3.5), 10 ** rng.uniform(-2, 3.5)
        q = rng.choice([0.005, 0.05, 0.5, 0.95, 0.995, rng.random()])
        assert beta_ppf(q, a, b) == pytest.approx(special.betaincinv(a, b, q), abs=TOL)
        x = rng.random()
        assert beta_cdf(x, a, b) == pytest.approx(special.betainc(a, b, x), abs=TOL)


LEVEL3 = [f"room{i}" for i in range(4)]
LEVEL2 = ["meeting", "desk"]
LEVEL1 = ["north", "south"]


def _random_path(rng: random.Random) -> list[str]:
    full = [rng.choice(LEVEL3), rng.choice(LEVEL2), rng.choice(LEVEL1)]
    return full[rng.choice([0, 0, 0, 1, 2]) :]  # mostly full paths, some shorter


def test_500_random_evidence_sets_match_numpy_and_scipy(r: redis.Redis, deployed: str) -> None:
    """predict, interval and surprise at 1e-9, over 3 levels, binary and 4-outcome
    variables, fractional weights, random kappa and alpha0."""
    rng = random.Random(2024)
    cases = []
    events = []
    for n in range(500):
        owner, outcomes = f"agent{n % 37}", (["yes", "no"] if n % 2 else ["a", "b", "c", "d"])
        kappa, alpha0 = (
            rng.choice([2.0, rng.uniform(0.1, 20)]),
            rng.choice([1.0, rng.uniform(0.05, 5)]),
        )
        scenario = f"sc{n}"
        config = WorldConfigured(
            scenario=scenario, variables={"v": outcomes}, levels=3, kappa=kappa, alpha0=alpha0
        )
        evidence = [
            EvidenceObserved(
                scenario=scenario,
                path=_random_path(rng),
                variable="v",
                outcome=rng.choice(outcomes),
                weight=rng.choice([1.0, rng.uniform(0.001, 4)]),
            )
            for _ in range(rng.randint(0, 25))
        ]
        base = n * 100
        events.append(stored(owner, base, config))
        events += [stored(owner, base + 1 + i, e) for i, e in enumerate(evidence)]
        query = [rng.choice(LEVEL3), rng.choice(LEVEL2), rng.choice(LEVEL1)]
        if evidence and rng.random() < 0.7:
            query = list(rng.choice(evidence).path)  # a node that surely has counts
        cases.append((owner, scenario, Oracle(outcomes, kappa, alpha0), evidence, query))
    fold(r, events)

    with Reader.from_url(deployed) as reader:
        for owner, scenario, oracle, evidence, path in cases:
            got = reader.world_predict(owner, scenario, path, "v")
            want = oracle.predict(evidence, path)
            assert list(got.values()) == pytest.approx(list(want), abs=TOL, rel=0)
            outcome = random.Random(scenario).choice(list(oracle.outcomes))
            mass = 0.9 if len(scenario) % 2 else 0.5
            lo, hi = reader.world_interval(owner, scenario, path, "v", outcome, mass=mass)
            want_lo, want_hi = oracle.interval(evidence, path, outcome, mass)
            assert lo == pytest.approx(want_lo, abs=TOL, rel=0)
            assert hi == pytest.approx(want_hi, abs=TOL, rel=0)
            got_s = reader.world_surprise(owner, scenario, path, "v", outcome)
            assert got_s == pytest.approx(oracle.surprise(evidence, path, outcome), abs=TOL, rel=0)


# --- The worked example of docs/world-model.md ------------------------------------------

EXAMPLE_PATH = ["office-3", "meeting-rooms", "building"]


def example_events() -> list[EvidenceObserved]:
    """building: 8 occupied / 2 free in other meeting rooms; office-3 itself: 0 / 2."""

    def obs(path: list[str], outcome: str, weight: float) -> EvidenceObserved:
        return EvidenceObserved(
            scenario="smart_office", path=path, variable="occupied", outcome=outcome,
            weight=weight,
        )  # fmt: skip

    return [
        obs(["office-1", "meeting-rooms", "building"], "yes", 6),
        obs(["office-2", "meeting-rooms", "building"], "yes", 2),
        obs(["office-2", "meeting-rooms", "building"], "no", 2),
        obs(EXAMPLE_PATH, "no", 2),
    ]


def test_worked_example_of_the_docs(r: redis.Redis, deployed: str) -> None:
    config = WorldConfigured(
        scenario="smart_office", variables={"occupied": ["yes", "no"]}, levels=3
    )
    events = [stored("ada", 0, config)]
    events += [stored("ada", i + 1, e) for i, e in enumerate(example_events())]
    fold(r, events)
    with Reader.from_url(deployed) as reader:
        p = reader.world_predict("ada", "smart_office", EXAMPLE_PATH, "occupied")
        p_room = reader.world_predict("ada", "smart_office", EXAMPLE_PATH[1:], "occupied")
        p_root = reader.world_predict("ada", "smart_office", EXAMPLE_PATH[2:], "occupied")
        p_new = reader.world_predict(
            "ada", "smart_office", ["office-9", "meeting-rooms", "building"], "occupied"
        )
        lo, hi = reader.world_interval("ada", "smart_office", EXAMPLE_PATH, "occupied", "yes")
        surprise = reader.world_surprise("ada", "smart_office", EXAMPLE_PATH, "occupied", "yes")
        best = reader.world_most_likely("ada", "smart_office", EXAMPLE_PATH, "occupied")
        summary = reader.world_summary("ada", "smart_office", level=1)
    # Root (building): Dirichlet(1, 1) + (8, 4) -> mean (9/14, 5/14).
    assert p_root["yes"] == pytest.approx(9 / 14, abs=1e-12)  # 0.6429
    # meeting-rooms: prior 2 * (9/14, 5/14) + (8, 4) = (9.2857, 4.7143) / 14.
    assert p_room["yes"] == pytest.approx(130 / 196, abs=1e-12)  # 0.663265
    # office-3: prior 2 * (0.663265, 0.336735) + (0, 2) = (1.326531, 2.673469) / 4.
    assert p["yes"] == pytest.approx(130 / 392, abs=1e-12)  # 0.331633
    assert p["no"] == pytest.approx(262 / 392, abs=1e-12)  # 0.668367
    # An unseen room falls back on its parent: exactly meeting-rooms' predictive.
    assert p_new == pytest.approx(p_room, abs=1e-12)
    # Without shrinkage office-3 would say P(yes) = 0 after two "no"s; interval from
    # Beta(1.326531, 2.673469).
    assert (round(lo, 4), round(hi, 4)) == (0.0434, 0.7226)
    assert surprise == pytest.approx(-math.log(130 / 392), abs=1e-12)  # 1.1037 nats
    assert round(surprise, 4) == 1.1037
    assert best[0] == "no"
    assert best[1] == pytest.approx(262 / 392, abs=1e-12)
    rooms = {tuple(node["path"]): node["variables"]["occupied"] for node in summary}
    others = {("office-1", "meeting-rooms", "building"), ("office-2", "meeting-rooms", "building")}
    assert set(rooms) == {*others, tuple(EXAMPLE_PATH)}
    office3 = rooms[tuple(EXAMPLE_PATH)]
    assert office3["counts"] == {"yes": 0.0, "no": 2.0}
    assert office3["entropy"] == pytest.approx(-(p["yes"] * math.log(p["yes"]) +
                                                 p["no"] * math.log(p["no"])))  # fmt: skip


def test_summary_of_a_general_level_and_counts_of_fractions(r: redis.Redis, deployed: str) -> None:
    config = WorldConfigured(scenario="sc", variables={"v": ["a", "b", "c", "d"]}, levels=3)
    weights = [0.1, 0.2, 0.3, 1e-9, 123.456789]
    events = [stored("bo", 0, config)]
    events += [
        stored("bo", i + 1, EvidenceObserved(scenario="sc", path=["x", "y", "z"], variable="v",
                                              outcome="c", weight=w))
        for i, w in enumerate(weights)
    ]  # fmt: skip
    fold(r, events)
    with Reader.from_url(deployed) as reader:
        (root,) = reader.world_summary("bo", "sc", level=3)
        assert reader.world_summary("bo", "sc", level=2)[0]["path"] == ["y", "z"]
    assert root["path"] == ["z"]
    assert root["variables"]["v"]["counts"]["c"] == pytest.approx(math.fsum(weights), abs=1e-15)


async def test_producer_worker_reader_end_to_end(r: redis.Redis, deployed: str) -> None:
    with Producer.from_url(deployed) as producer:
        world = World(producer, "ada", "smart_office")
        world.configure({"occupied": ["yes", "no"]}, levels=3, kappa=2.0, alpha0=1.0)
        for event in example_events():
            last = world.observe(event.path, "occupied", event.outcome, event.weight)
    async with running_worker(deployed), AsyncReader.from_url(deployed) as reader:
        assert (await reader.wait(last, timeout=20)).applied
        p = await reader.world_predict("ada", "smart_office", EXAMPLE_PATH, "occupied")
        config = await reader.world_config("ada", "smart_office")
    assert p["yes"] == pytest.approx(130 / 392, abs=1e-12)
    assert config is not None and config.variables == {"occupied": ("yes", "no")}
    assert r.xlen(keys.dlq(last.partition)) == 0
