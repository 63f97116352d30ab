"""Versioned event models, the upcaster registry and the v1 catalogue.

An event is one immutable fact. Its model names its ``TYPE`` and schema ``VERSION``; a
payload stored at an older version is upgraded on read by registered upcasters, and a type
this code does not know stays readable as :class:`GenericEvent` (forward compatibility).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
)

from .errors import InvalidInputError
from .keys import check_id

Id = Annotated[str, AfterValidator(check_id)]
"""A string that may become part of a key: checked against the owner-id rule."""

Tag = Id
Text = Annotated[str, Field(max_length=1_000_000)]


def _b64_in(value: object) -> object:
    # JSON has no bytes: the JSON codec carries blobs as base64 text.
    return base64.b64decode(value, validate=True) if isinstance(value, str) else value


Blob = Annotated[
    bytes,
    BeforeValidator(_b64_in),
    PlainSerializer(lambda b: base64.b64encode(b).decode(), return_type=str, when_used="json"),
]

SessionRule = Literal["required", "optional"]


class Event(BaseModel):
    """Base of every event model: frozen, strict about unknown fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    TYPE: ClassVar[str]
    VERSION: ClassVar[int] = 1
    SESSION: ClassVar[SessionRule] = "optional"

    @property
    def event_type(self) -> str:
        return self.TYPE

    def payload(self, *, json_safe: bool = False) -> dict[str, Any]:
        """The data to encode. ``json_safe`` renders blobs as base64 text."""
        return self.model_dump(mode="json" if json_safe else "python")


class GenericEvent(Event):
    """An event whose type this code does not know (or a newer version of one it does).

    It keeps the raw payload so tools like ``memstream tail`` can still show it, and lets
    callers append custom types that no built-in projection folds.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    TYPE: ClassVar[str] = "generic"

    type: str
    version: int = 1
    data: dict[str, Any] = Field(default_factory=dict)

    @property
    def event_type(self) -> str:
        return self.type

    def payload(self, *, json_safe: bool = False) -> dict[str, Any]:
        return dict(self.data)


Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

_MODELS: dict[str, type[Event]] = {}
_UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def register(model: type[Event]) -> type[Event]:
    """Class decorator: make ``model`` the current version of its ``TYPE``."""
    _MODELS[model.TYPE] = model
    return model


def upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Decorator: register a function that turns a ``from_version`` payload into the next."""

    def wrap(fn: Upcaster) -> Upcaster:
        _UPCASTERS[(event_type, from_version)] = fn
        return fn

    return wrap


def model_for(event_type: str) -> type[Event] | None:
    return _MODELS.get(event_type)


def known_types() -> list[str]:
    return sorted(_MODELS)


def upcast(event_type: str, version: int, data: dict[str, Any]) -> dict[str, Any]:
    """Upgrade ``data`` from ``version`` to the registered model's version."""
    model = _MODELS[event_type]
    while version < model.VERSION:
        step = _UPCASTERS.get((event_type, version))
        if step is None:
            raise InvalidInputError(
                "v", f"no upcaster from {event_type} v{version} to v{version + 1}", version
            )
        data = step(data)
        version += 1
    return data


def build(event_type: str, version: int, data: dict[str, Any]) -> Event:
    """Validate a decoded payload into its model, upcasting first; unknown -> generic.

    A version newer than the model is also kept generic: an older worker must not
    misread a newer producer's event, and the caller counts it as unknown.
    """
    model = _MODELS.get(event_type)
    if model is None or version > model.VERSION:
        return GenericEvent(type=event_type, version=version, data=data)
    # The model's validator directly: model_validate's Python wrapper added a third to
    # the cost of validating a message, and a worker validates every event it folds.
    event: Event = model.__pydantic_validator__.validate_python(upcast(event_type, version, data))
    return event


def _finite_positive(value: float) -> float:
    if not math.isfinite(value) or value <= 0:
        raise ValueError("must be positive and finite")
    return value


MAX_DURATION_S = 30 * 86_400
"""Longest duration an event may carry (30 days). Skill statistics sum durations as
integer microseconds (HINCRBY, int64): one is at most 2.6e12, far below 2**53 (exact as
a Lua number), and 3.5 million maximal runs fit in one sum."""

Duration = Annotated[float, Field(ge=0, le=MAX_DURATION_S, allow_inf_nan=False)]

MAX_WEIGHT = 1e6
"""Counts are int64 nano-units (HINCRBY): 9,000 maximal weights fit in one count."""


def _nano_weight(value: float) -> float:
    # Rounded once, at validation: the logged weight and the summed integer then agree
    # exactly, and sums stay exact and order-free.
    if not math.isfinite(value) or value <= 0 or value > MAX_WEIGHT:
        raise ValueError(f"must be positive, finite and at most {MAX_WEIGHT:g}")
    nano = round(value * 1e9)
    if nano < 1:
        raise ValueError("must be at least 1e-9 (weights have nano-unit resolution)")
    return nano / 1e9


# --- The v1 catalogue -------------------------------------------------------------------


@register
class StateSaved(Event):
    TYPE: ClassVar[str] = "state.saved"
    state: dict[str, Any]


MAX_SESSION_TTL_S = 10 * 365 * 86_400
"""Longest TTL a session may choose (10 years); 0 means the session never expires."""

SessionTtl = Annotated[int, Field(ge=0, le=MAX_SESSION_TTL_S)]


@register
class SessionStarted(Event):
    """A session begins. v2 adds ``ttl_s``: the session's own TTL (docs/ttl.md), as
    ``session.ttl_set`` would set it; a v1 payload is a v2 one without it."""

    TYPE: ClassVar[str] = "session.started"
    VERSION: ClassVar[int] = 2
    SESSION: ClassVar[SessionRule] = "required"
    previous: Id | None = None
    ttl_s: SessionTtl | None = None

    def payload(self, *, json_safe: bool = False) -> dict[str, Any]:
        data = super().payload(json_safe=json_safe)
        if data.get("ttl_s") is None:  # unset: the payload v1 carried
            data.pop("ttl_s", None)
        return data


@upcaster("session.started", 1)
def _session_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    return dict(data)  # v2 only adds ttl_s, which defaults to unset


@register
class SessionTtlSet(Event):
    """Choose a session's TTL after it started: ``ttl_s`` seconds after its newest
    message, 0 for never, ``None`` for the deployment default (docs/ttl.md). The latest
    choice by log id wins, and it may shorten the session's life."""

    TYPE: ClassVar[str] = "session.ttl_set"
    SESSION: ClassVar[SessionRule] = "required"
    ttl_s: SessionTtl | None


@register
class SessionDataSet(Event):
    TYPE: ClassVar[str] = "session.data_set"
    SESSION: ClassVar[SessionRule] = "required"
    key: Annotated[str, Field(min_length=1, max_length=256)]
    value: Any


@register
class StepRecorded(Event):
    TYPE: ClassVar[str] = "step.recorded"
    action: Text
    observation: Text = ""
    reasoning: Text = ""
    success: bool | None = None


@register
class EpisodeSaved(Event):
    TYPE: ClassVar[str] = "episode.saved"
    episode_id: Id
    task: Text
    outcome: Text = ""
    success: bool | None = None
    duration_s: Duration = 0.0
    tags: list[Tag] = Field(default_factory=list, max_length=64)
    importance: Annotated[float, Field(ge=0, le=1)] = 0.5


@register
class KnowledgeLearned(Event):
    TYPE: ClassVar[str] = "knowledge.learned"
    knowledge_id: Id
    kind: Literal["pattern", "fact"] = "fact"
    description: Text
    confidence: Annotated[float, Field(ge=0, le=1)] = 0.5
    tags: list[Tag] = Field(default_factory=list, max_length=64)


@register
class SkillDefined(Event):
    TYPE: ClassVar[str] = "skill.defined"
    name: Id
    actions: list[Text] = Field(default_factory=list, max_length=1000)
    description: Text = ""
    tags: list[Tag] = Field(default_factory=list, max_length=64)


@register
class SkillExecuted(Event):
    TYPE: ClassVar[str] = "skill.executed"
    name: Id
    success: bool
    duration_s: Duration = 0.0


@register
class PatternObserved(Event):
    TYPE: ClassVar[str] = "pattern.observed"
    pattern: Id
    issue_kind: Id
    detail: Text = ""


@register
class FixOutcome(Event):
    TYPE: ClassVar[str] = "fix.outcome"
    pattern: Id
    accepted: bool
    detail: Text = ""


@register
class EvidenceObserved(Event):
    """Evidence for one outcome along a path, most specific node first (see world model).

    ``weight`` has nano-unit resolution: it is rounded to 9 decimals here, so the weight
    in the log is exactly the integer count (weight * 1e9) the projection sums."""

    TYPE: ClassVar[str] = "evidence.observed"
    scenario: Id
    path: list[Id] = Field(min_length=1, max_length=16)
    variable: Id
    outcome: Id
    weight: Annotated[float, AfterValidator(_nano_weight)] = 1.0
    source: str | None = None


@register
class OwnerForgotten(Event):
    TYPE: ClassVar[str] = "owner.forgotten"
    reason: str = ""
