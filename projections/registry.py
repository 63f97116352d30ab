"""The projections a worker folds. Adding a read model = one module + one line here."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .base import Projection
from .episodes import Episodes
from .exploration import Exploration
from .history import History
from .knowledge import Knowledge
from .patterns import Patterns
from .search_index import SearchIndex
from .sessions import Sessions
from .skills import Skills
from .state import State
from .store import Store
from .tensors import Tensors
from .working import Working
from .world import World


def default_projections() -> list[Projection]:
    return [
        History(), State(), Sessions(), Working(),
        Episodes(), Knowledge(), Skills(), Patterns(), SearchIndex(),
        World(), Exploration(), Tensors(),
        Store(),
    ]  # fmt: skip


def by_type(projections: Iterable[Projection]) -> dict[str, Sequence[Projection]]:
    """Event type -> the projections that fold it, in registration order."""
    table: dict[str, list[Projection]] = {}
    for projection in projections:
        for event_type in projection.handles:
            table.setdefault(event_type, []).append(projection)
    return dict(table)
