"""memstream projections: what agents read (``Reader``, ``AsyncReader``) and the typed
results they return (:mod:`.results`), the projection base a read model implements, and
the convergence harness that tests one.

Names load on first use, so importing the package costs nothing until a name is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import ApplyContext, Projection, Query
    from .cache import CacheStats, ReadCache
    from .context import ContextSection
    from .reader import AsyncReader, Reader
    from .registry import default_projections
    from .results import (
        Context,
        Episode,
        ExplorationHit,
        Insights,
        Knowledge,
        LogEntry,
        Message,
        Page,
        Pattern,
        Result,
        SessionInfo,
        Skill,
        SkillStats,
        Step,
        TensorState,
        WorldNode,
    )
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
    "ContextSection": ".context",
    "Context": ".results",
    "Episode": ".results",
    "ExplorationHit": ".results",
    "Insights": ".results",
    "Knowledge": ".results",
    "LogEntry": ".results",
    "Message": ".results",
    "Page": ".results",
    "Pattern": ".results",
    "Result": ".results",
    "SessionInfo": ".results",
    "Skill": ".results",
    "SkillStats": ".results",
    "Step": ".results",
    "TensorState": ".results",
    "WorldNode": ".results",
}

__all__ = [
    "ApplyContext",
    "AsyncReader",
    "CacheStats",
    "Context",
    "ContextSection",
    "ConvergenceError",
    "Episode",
    "ExplorationHit",
    "Insights",
    "Knowledge",
    "LogEntry",
    "Message",
    "Page",
    "Pattern",
    "Projection",
    "Query",
    "ReadCache",
    "Reader",
    "Result",
    "SessionInfo",
    "Skill",
    "SkillStats",
    "Step",
    "TensorState",
    "WaitResult",
    "WaitTimeoutError",
    "WorldNode",
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
