"""The projections a worker folds. Adding a read model = one module + one line here."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .base import Projection
from .history import History
from .sessions import Sessions
from .state import State
from .working import Working


def default_projections() -> list[Projection]:
    return [History(), State(), Sessions(), Working()]


def by_type(projections: Iterable[Projection]) -> dict[str, Sequence[Projection]]:
    """Event type -> the projections that fold it, in registration order."""
    table: dict[str, list[Projection]] = {}
    for projection in projections:
        for event_type in projection.handles:
            table.setdefault(event_type, []).append(projection)
    return dict(table)
