"""Core suites, run again on a three-primary Redis Cluster.

Each suite's tests run on one node in their own module; here the same test functions
run with the ``cluster`` topology (``tests/conftest.py``: ``r`` is a cluster client and
``redis_url``/``deployed`` a ``redis+cluster://`` URL). The copies carry no marks of
their own, so the single-node run is not doubled.
"""

from __future__ import annotations

import types
from typing import Any

import pytest
from _pytest.fixtures import FixtureFunctionDefinition

from tests import test_append, test_cache, test_forget, test_replay, test_worker_basic

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


def _suite(module: types.ModuleType, names: list[str] | None = None) -> None:
    globals().update(_copies(module, names))


_suite(test_worker_basic, ["test_worker_folds_history_state_sessions_working"])
# test_partition_mismatch_is_refused sends keys of two partitions on purpose: on a
# Cluster redis-py refuses it before sending (two slots), which is the point of slots.
# test_eight_threads_lose_nothing takes ~30 s on the cluster on 2 cores (eight threads
# share one cluster client's per-node pools): left to the single-node run to keep
# `make test` short.
SKIPPED_APPENDS = {"test_partition_mismatch_is_refused", "test_eight_threads_lose_nothing"}
_suite(test_append, [n for n in dir(test_append) if n not in SKIPPED_APPENDS])
# test_forget_leaves_nothing_that_names_the_owner waits for a neighbour's apply as the
# sign that a planted bad pointer was dead-lettered; the Cluster's per-feed reads do not
# order the two, so that wait proves nothing there. The other forget tests run.
_suite(test_forget, ["test_an_entry_in_flight_during_the_forget_writes_nothing",
                     "test_owner_forgotten_event_is_run_by_the_worker"])  # fmt: skip
_suite(test_cache, ["test_hits_skip_redis_and_a_write_by_another_process_invalidates"])
_suite(
    test_replay,
    ["test_replay_twice_in_a_row", "test_cli_replay",
     "test_replay_cleans_up_after_a_replay_that_died",
     "test_owner_rebuild_in_place_under_live_appends"],
)  # fmt: skip
