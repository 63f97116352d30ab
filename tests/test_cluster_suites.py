"""Core suites, run again on a three-primary Redis Cluster.

Each suite's tests run on one node in their own module; here the same test functions
run with the ``cluster`` topology (``tests/conftest.py``: ``r`` is a cluster client and
``redis_url``/``deployed`` a ``redis+cluster://`` URL). The copies carry no marks of
their own, so the single-node run is not doubled.
"""

from __future__ import annotations

import types
from typing import Any, cast

import pytest
import redis
from _pytest.fixtures import FixtureFunctionDefinition
from redis.cluster import RedisCluster

from memstream.producers import keys
from tests import (
    test_append,
    test_cache,
    test_crash,
    test_forget,
    test_replay,
    test_replay_owner,
    test_search,
    test_wire_protocol,
    test_worker_basic,
    test_world,
)
from tests.redis_cluster import RedisClusterNodes

TOPOLOGY_FIXTURES = {"r", "redis_url", "deployed", "producer", "stored"}
CONFTEST_FIXTURES = {"r", "redis_url", "deployed", "topology", "redis_server", "redis_cluster"}
ON_CLUSTER = pytest.mark.parametrize("topology", ["cluster"], indirect=True)


def _copies(module: types.ModuleType, names: list[str] | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, value in vars(module).items():
        if isinstance(value, FixtureFunctionDefinition) and name not in CONFTEST_FIXTURES:
            found[name] = value  # the suite's own fixtures (they build on ``r``)
        if not name.startswith("test_") or (names is not None and name not in names):
            continue
        if not isinstance(value, types.FunctionType):
            continue
        args = set(value.__code__.co_varnames[: value.__code__.co_argcount])
        if not args & TOPOLOGY_FIXTURES or "redis_server" in args:
            continue  # touches no Redis, or drives the single node's process itself
        copy = types.FunctionType(
            value.__code__, value.__globals__, name, value.__defaults__, value.__closure__
        )
        copy.__kwdefaults__ = value.__kwdefaults__
        copy.__annotations__ = value.__annotations__
        marks = list(getattr(value, "pytestmark", []))
        copy.pytestmark = [*marks, ON_CLUSTER.mark]  # type: ignore[attr-defined]
        found[f"{name}__{module.__name__.rsplit('.', 1)[-1]}"] = copy
    return found


def _suite(
    module: types.ModuleType, names: list[str] | None = None, *, strict: bool = True
) -> None:
    copies = _copies(module, names)
    # A test named here but renamed or moved must not drop out of the cluster run silently.
    named = names if strict else []
    missing = [n for n in named or [] if not any(c.startswith(n + "__") for c in copies)]
    assert not missing, f"{module.__name__} has no cluster-capable {missing}"
    globals().update(copies)


_suite(test_worker_basic, ["test_worker_folds_history_state_sessions_working"])
# test_partition_mismatch_is_refused sends keys of two partitions on purpose: on a
# Cluster redis-py refuses it before sending (two slots), which is the point of slots.
# test_eight_threads_lose_nothing takes ~30 s on the cluster on 2 cores (eight threads
# share one cluster client's per-node pools): left to the single-node run to keep
# `make test` short.
SKIPPED_APPENDS = {"test_partition_mismatch_is_refused", "test_eight_threads_lose_nothing"}
_suite(test_append, [n for n in dir(test_append) if n not in SKIPPED_APPENDS], strict=False)
# test_forget_leaves_nothing_that_names_the_owner waits for a neighbour's apply as the
# sign that a planted bad pointer was dead-lettered; the Cluster's per-feed reads do not
# order the two, so that wait proves nothing there. The other forget tests run.
_suite(test_forget, ["test_an_entry_in_flight_during_the_forget_writes_nothing",
                     "test_owner_forgotten_event_is_run_by_the_worker"])  # fmt: skip
_suite(test_cache, ["test_hits_skip_redis_and_a_write_by_another_process_invalidates"])
_suite(
    test_replay,
    ["test_replay_twice_in_a_row", "test_cli_replay",
     "test_replay_cleans_up_after_a_replay_that_died"],
)  # fmt: skip
_suite(test_replay_owner, ["test_owner_rebuild_in_place_under_live_appends"])
# Search and the world model: one end-to-end test each (their folds' Redis access is
# the worker's; the rest of those suites checks arithmetic, which the topology cannot
# change).
_suite(test_search, ["test_expired_and_deleted_items_are_never_hits"])
_suite(test_world, ["test_producer_worker_reader_end_to_end"])


@ON_CLUSTER
def test_sigkilled_workers_lose_nothing_and_apply_once_on_a_cluster(
    deployed: str, r: redis.Redis
) -> None:
    """The crash test (worker processes SIGKILLed under load, then a full replay that must
    equal the live projections) at a size that keeps ``make test`` short: 3,000 events and
    two kills, against 20,000 and three on one node."""
    test_crash.test_sigkilled_workers_lose_nothing_and_apply_once(deployed, r, 3000, 2)


@ON_CLUSTER
def test_node_appends_through_the_node_that_owns_the_slot(
    deployed: str, r: redis.Redis, redis_cluster: RedisClusterNodes
) -> None:
    """The Node example (tests/node/append.mjs, a plain node-redis client) pointed at one
    Cluster node. The script reads ``ms:meta`` first, whose slot is fixed, so the owner's
    slot is moved to ``ms:meta``'s primary for the test (and back): one node then serves
    every command of the script, as the README's one-node example expects; across nodes
    a cluster-aware client (node-redis ``createCluster``) follows ``MOVED`` itself."""
    cluster = cast(RedisCluster, r)
    slot = int(cluster.keyslot(keys.log(keys.partition("node-agent", 16), "node-agent")))  # type: ignore[no-untyped-call]
    home = cluster.get_node_from_key(keys.META)  # type: ignore[no-untyped-call]
    back = redis_cluster._slot_owner(slot)
    if back != home.port:
        redis_cluster.move_slot(slot, home.port)
    fresh = redis_cluster.client()  # knows the slot's new home
    try:
        test_wire_protocol.test_node_example_appends_and_dedups_by_eid(
            f"redis://{home.host}:{home.port}/0", cast(redis.Redis, fresh)
        )
    finally:
        fresh.close()
        if back != home.port:
            redis_cluster.move_slot(slot, back)
