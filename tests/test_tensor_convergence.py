"""The tensor projection converges: any delivery order, duplicates and batch sizes leave
the same stored states (byte for byte), with a model published mid-stream and retention."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memstream.producers import Settings
from memstream.producers import events_tensors as et
from memstream.producers.entry import StoredEvent
from memstream.producers.tensors import layout, split_groups
from memstream.projections.tensors import Tensors
from memstream.projections.tensors.model import GroupedModel
from memstream.projections.tensors.publish import serialise
from memstream.projections.tensors.registry import ModelRegistry, Version
from memstream.projections.tensors.train import train
from memstream.projections.testing import (
    Deliveries,
    check_convergence,
    event_streams,
    with_deliveries,
)
from tests.tensor_util import GROUPS, adversarial, structured

NOW = (int(time.time()) + 86_400) * 1000
START = NOW - 60_000
RANGES, BOUNDS = split_groups(GROUPS)
POOL = [*structured(12, seed=11), *adversarial(6)]


def _version(seed: int, scope: str | None, at_ms: int) -> Version:
    config, weights, _ = train(
        structured(300).astype(np.float64),
        layout(RANGES, BOUNDS, 50),
        kind="state",
        scope=scope,
        epochs=1,
        seed=seed,
    )
    config_json, blob, sha = serialise(config, weights)
    model = GroupedModel.load(sha, config_json, blob)
    event = et.TensorModelPublished(
        kind="state", scope=scope, version=sha[:16], sha256=sha, config=config
    )
    return Version((at_ms, 0), event, model)


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    # A kind-wide model a third of the way in, an owner-scoped one two thirds in: events
    # before, between and after them take different versions (or none).
    return ModelRegistry.fixed(
        [_version(1, None, START + 7_000), _version(2, "alice", START + 14_000)]
    )


def _tensor(i: int, dtype: str, grouped: bool, kind: str) -> et.TensorRecorded:
    data = POOL[i].astype(dtype)
    return et.TensorRecorded(
        shape=[50],
        dtype=dtype,
        data=data.tobytes(),
        kind=kind,
        groups=RANGES if grouped else {},
        bounds=BOUNDS if grouped else {},
        meta={"i": i},
    )


PAYLOADS: dict[str, Any] = {
    "tensor.recorded": st.builds(
        _tensor,
        st.integers(0, len(POOL) - 1),
        st.sampled_from(["float32", "float16"]),
        st.booleans(),
        st.sampled_from(["state", "state", "obs"]),
    ),
}


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    with_deliveries(
        event_streams(
            kinds=["tensor.recorded"],
            payloads=PAYLOADS,
            start_ms=START,
            owners=("alice", "bob"),
            max_size=20,
        )
    )
)
def test_tensors_converge(
    deployed: str,
    r: redis.Redis,
    registry: ModelRegistry,
    case: tuple[list[StoredEvent], Deliveries],
) -> None:
    events, (order, duplicates, batch_sizes) = case
    check_convergence(
        r,
        [Tensors(registry)],
        events,
        order=order,
        duplicates=duplicates,
        batch_sizes=batch_sizes,
        settings=Settings(tensor_cap=4),
        now_ms=NOW,
    )


def test_the_log_decides_the_version(registry: ModelRegistry) -> None:
    kind_wide, scoped = registry.versions()
    assert registry.choose("state", "bob", (START + 6_999, 5)) is None
    assert registry.choose("state", "bob", (START + 7_000, 0)) is None  # not older than it
    assert registry.choose("state", "bob", (START + 7_000, 1)) is kind_wide
    assert registry.choose("state", "bob", (START + 20_000, 0)) is kind_wide
    assert registry.choose("state", "alice", (START + 20_000, 0)) is scoped
    assert registry.choose("obs", "alice", (START + 20_000, 0)) is None


def _encoded(registry: ModelRegistry, event: et.TensorRecorded, owner: str = "bob") -> Any:
    import msgpack

    from memstream.producers import keys
    from memstream.projections.base import ApplyContext

    stored = StoredEvent(owner, f"{START + 30_000}-0", event.TYPE, 1, event)
    ctx = ApplyContext(keys.Projection(0, 1), Settings(), NOW)
    packed, raw, payload, fallbacks = Tensors(registry).encode(stored, event, ctx)
    return msgpack.unpackb(packed), raw, payload, fallbacks


def test_vectors_that_do_not_fit_the_model_are_stored_losslessly(
    registry: ModelRegistry,
) -> None:
    fits, _, _, _ = _encoded(registry, _tensor(0, "float32", True, "state"))
    assert fits["model"] is not None and fits["note"] is None
    # Without groups, the model's own groups (and bounds) are used.
    default, _, _, _ = _encoded(registry, _tensor(0, "float32", False, "state"))
    assert default["model"] == fits["model"] and [g[0] for g in default["groups"]] == list(GROUPS)
    shorter = et.TensorRecorded(shape=[40], data=POOL[0][:40].tobytes())
    record, raw, payload, fallbacks = _encoded(registry, shorter)
    assert (raw, payload) == (160, len(record["groups"][0][5]))
    assert record["model"] is None and "do not match" in record["note"] and fallbacks == 1
    other = et.TensorRecorded(shape=[50], data=POOL[0].tobytes(), groups={"a": [0, 25]})
    record, *_ = _encoded(registry, other)
    assert record["model"] is None and "do not match" in record["note"]


def test_an_unreachable_registry_stores_losslessly(monkeypatch: pytest.MonkeyPatch) -> None:
    from memstream.projections.tensors import registry as registry_mod

    def broken(_: ModelRegistry) -> Any:
        raise ConnectionError("no route to Redis")

    monkeypatch.setattr(registry_mod, "WAIT_S", 0.1)
    record, *_ = _encoded(ModelRegistry(broken), _tensor(0, "float32", True, "state"))
    assert record["model"] is None and "registry unavailable" in record["note"]
    assert {g[4] for g in record["groups"]} <= {"zstd", "raw"}
