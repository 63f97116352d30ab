"""Event types of the world memory; importing :mod:`memstream.producers` registers them.

``evidence.observed`` itself lives in :mod:`.events` (the v1 catalogue); this module adds
the scenario configuration the world model reads, and exploration records.
"""

from __future__ import annotations

import math
from typing import Annotated, ClassVar

from pydantic import AfterValidator, Field, field_validator, model_validator

from .events import Event, Id, Tag, _finite_positive, register
from .events_live import MAX_EXTENSION_S

MAX_LEVELS = 16
"""Deepest hierarchy a scenario may declare; ``evidence.observed`` paths share the bound."""
MAX_OUTCOMES = 64
MAX_VARIABLES = 256
MAX_REWARD = 1e4
"""Rewards are summed as nano-unit integers (HINCRBY, int64): one increment stays far below
2**53 (exact as a Lua number) and a billion maximal rewards fit in one sum."""


Positive = Annotated[float, AfterValidator(_finite_positive)]


@register
class WorldConfigured(Event):
    """A scenario's configuration: outcome sets per variable, shrinkage and TTL per level.

    Last writer wins by log id; the whole configuration is one value, so a variable left
    out of a newer configuration is gone from the model (its counts stay, unread).
    """

    TYPE: ClassVar[str] = "world.configured"
    scenario: Id
    variables: dict[Id, list[Id]] = Field(min_length=1, max_length=MAX_VARIABLES)
    levels: Annotated[int, Field(ge=1, le=MAX_LEVELS)] = 3
    kappa: Positive = 2.0
    alpha0: Positive = 1.0
    # Bounded like ttl.extended (10 years): the worker adds it to an event time in ms,
    # which must stay a Redis integer (found by the extreme-numbers property test).
    ttl_s: list[Annotated[int, Field(ge=1, le=MAX_EXTENSION_S)] | None] = Field(
        default_factory=list, max_length=MAX_LEVELS
    )
    """TTL in seconds per level, Ω1 (most specific) first; empty: nothing expires."""

    @field_validator("variables")
    @classmethod
    def _outcome_sets(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for variable, outcomes in value.items():
            if not 2 <= len(outcomes) <= MAX_OUTCOMES:
                raise ValueError(
                    f"variable {variable!r} needs 2 to {MAX_OUTCOMES} outcomes, got {len(outcomes)}"
                )
            if len(set(outcomes)) != len(outcomes):
                raise ValueError(f"variable {variable!r} lists an outcome twice")
        return value

    @model_validator(mode="after")
    def _ttl_per_level(self) -> WorldConfigured:
        if self.ttl_s and len(self.ttl_s) != self.levels:
            raise ValueError(
                f"ttl_s must give one TTL (or null) per level: {self.levels} levels, "
                f"{len(self.ttl_s)} TTLs"
            )
        return self


def _reward(value: float) -> float:
    if not math.isfinite(value) or abs(value) > MAX_REWARD:
        raise ValueError(f"must be finite and within +-{MAX_REWARD:g}")
    # Nano-unit resolution, rounded here so the logged reward is exactly what is summed.
    return round(value * 1e9) / 1e9


@register
class ExplorationRecorded(Event):
    """One try of an action pattern in response to a trigger, and how it went."""

    TYPE: ClassVar[str] = "exploration.recorded"
    trigger: Id
    """``novel_situation``, ``low_confidence``, ``goal_failure``, ``curiosity`` or custom."""
    pattern: Id
    context_tags: list[Tag] = Field(default_factory=list, max_length=64)
    success: bool
    reward: Annotated[float, AfterValidator(_reward)] = 0.0


TRIGGERS = ("novel_situation", "low_confidence", "goal_failure", "curiosity")
"""The well-known triggers; any other id is accepted as a custom trigger."""
