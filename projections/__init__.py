"""memstream projections: what agents read (``Reader``, ``AsyncReader``), the projection
base a read model implements, and the convergence harness that tests one.

Names load on first use, so importing the package costs nothing until a name is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import ApplyContext, Projection, Query
    from .cache import CacheStats, ReadCache
    from .reader import AsyncReader, Reader
    from .registry import default_projections
    from .testing import (
        ConvergenceError,
        check_convergence,
        deliveries,
        event_streams,
        with_deliveries,
    )
    from .wait import WaitResult, WaitTimeoutError

_WHERE = {
    "ApplyContext": ".base",
    "AsyncReader": ".reader",
    "CacheStats": ".cache",
    "ConvergenceError": ".testing",
    "Projection": ".base",
    "Query": ".base",
    "ReadCache": ".cache",
    "Reader": ".reader",
    "WaitResult": ".wait",
    "WaitTimeoutError": ".wait",
    "check_convergence": ".testing",
    "deliveries": ".testing",
    "event_streams": ".testing",
    "with_deliveries": ".testing",
    "default_projections": ".registry",
}

__all__ = [
    "ApplyContext",
    "AsyncReader",
    "CacheStats",
    "ConvergenceError",
    "Projection",
    "Query",
    "ReadCache",
    "Reader",
    "WaitResult",
    "WaitTimeoutError",
    "check_convergence",
    "default_projections",
    "deliveries",
    "event_streams",
    "with_deliveries",
]


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(where, __name__), name)
