"""memstream workers: the process that folds events into projections, and its tools.

Names load on first use, so ``memstream --help`` and the CLI's light commands do not pay
for the worker runtime (numpy, torch) they never touch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .deploy import init
    from .embedded import EmbeddedRedis
    from .health import Health, check
    from .metrics import Metrics
    from .options import WorkerOptions
    from .replay import ReplaySummary, replay_all
    from .replay_owner import replay_owner
    from .worker import Worker, serve

_WHERE = {
    "EmbeddedRedis": ".embedded",
    "Health": ".health",
    "Metrics": ".metrics",
    "ReplaySummary": ".replay",
    "Worker": ".worker",
    "WorkerOptions": ".options",
    "check": ".health",
    "init": ".deploy",
    "replay_all": ".replay",
    "replay_owner": ".replay_owner",
    "serve": ".worker",
}

__all__ = [
    "EmbeddedRedis",
    "Health",
    "Metrics",
    "ReplaySummary",
    "Worker",
    "WorkerOptions",
    "check",
    "init",
    "replay_all",
    "replay_owner",
    "serve",
]


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(where, __name__), name)
