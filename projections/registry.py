"""The projections a worker folds. Adding a read model = one module + one line here.

A projection module declares everything the rest derives from it: the events it folds
(``handles``), its keys' names (``key_names``, for ``memstream stats``), its
``Reader.context`` section (``context``) and its ``apply``. Projections of your own load
with ``memstream worker --projections pkg.mod:attr`` (and the same on ``replay``):
see docs/extending.md.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from memstream.producers.errors import ConfigError

from .base import Projection
from .checkpoints import Checkpoints
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
from .vectors import Vectors
from .working import Working
from .world import World

if TYPE_CHECKING:
    from .context import ContextSection


def default_projections() -> list[Projection]:
    """A fresh instance of every built-in projection, in registration order."""
    return [
        History(),
        State(),
        Sessions(),
        Working(),
        Episodes(),
        Knowledge(),
        Skills(),
        Patterns(),
        SearchIndex(),
        World(),
        Exploration(),
        Tensors(),
        Store(),
        Checkpoints(),
        Vectors(),
    ]


def by_type(projections: Iterable[Projection]) -> dict[str, Sequence[Projection]]:
    """Event type -> the projections that fold it, in registration order."""
    table: dict[str, list[Projection]] = {}
    for projection in projections:
        for event_type in projection.handles:
            table.setdefault(event_type, []).append(projection)
    return dict(table)


def stats_types(projections: Iterable[Projection]) -> dict[str, str]:
    """Key name -> the memory type ``memstream stats`` reports it under.

    Several projections may share a key name only under the same type (the item keys of
    episodes, knowledge and skills); any other clash is a configuration error.
    """
    table: dict[str, str] = {}
    for projection in projections:
        kind = projection.stats_type or projection.name
        for name in projection.key_names:
            if table.setdefault(name, kind) != kind:
                raise ConfigError(
                    f"projection {projection.name!r} writes keys named {name!r}, already "
                    f"counted as {table[name]!r}"
                )
    return table


def context_sections(projections: Iterable[Projection]) -> list[ContextSection]:
    """The ``Reader.context`` sections the projections declare, by rank."""
    sections = [p.context for p in projections if p.context is not None]
    return sorted(sections, key=lambda s: s.rank)


def load(spec: str) -> list[Projection]:
    """The projections ``spec`` (``package.module:attr``) names: ``attr`` is a projection
    class, an instance, or a list of either."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"bad projection {spec!r}: write it as package.module:attr")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(
            f"cannot import projection module {module_name!r} ({e}): is it on PYTHONPATH?"
        ) from e
    value = getattr(module, attr, None)
    if value is None:
        raise ConfigError(f"{module_name!r} has no attribute {attr!r}")
    found = list(value) if isinstance(value, list | tuple) else [value]
    out: list[Projection] = []
    for value in found:
        item = value() if isinstance(value, type) and issubclass(value, Projection) else value
        if not isinstance(item, Projection):
            raise ConfigError(f"{spec} is not a Projection (got {type(item).__name__})")
        out.append(item)
    return out


def with_extra(specs: Sequence[str]) -> list[Projection]:
    """The built-in projections plus those ``specs`` name (see :func:`load`), checked:
    unique names, events to fold, and key names that do not clash."""
    projections = default_projections()
    for spec in specs:
        projections.extend(load(spec))
    names = [p.name for p in projections]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"projection names used twice: {twice}")
    for p in projections:
        if not p.handles:
            raise ConfigError(f"projection {p.name!r} handles no event type")
    stats_types(projections)
    return projections
