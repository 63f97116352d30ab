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

from tests import test_worker_basic

ON_CLUSTER = pytest.mark.parametrize("topology", ["cluster"], indirect=True)


def _copies(module: types.ModuleType, names: list[str] | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, value in vars(module).items():
        if not name.startswith("test_") or (names is not None and name not in names):
            continue
        if not isinstance(value, types.FunctionType):
            continue
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
