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
    PlainValidator,
    model_validator,
)

from .errors import InvalidInputError
from .keys import check_id
from .tensors import check_event as tensor_rules

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


MessageId = Annotated[str, Field(min_length=1, max_length=256)]
"""A message or tool-call id: opaque to memstream (never part of a key), so any text."""


class ToolCall(BaseModel):
    """One tool call an assistant message requests (LangChain's ``tool_calls`` entry)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Annotated[str, Field(min_length=1, max_length=256)]
    arguments: dict[str, Any] = Field(default_factory=dict)
    id: MessageId | None = None


MAX_TEXT = 1_000_000
MAX_PARTS = 1000


def _content(value: object) -> str | list[dict[str, Any]]:
    # One validator rather than a union, so an error names "content" itself. A content
    # part is an open dict (text, image_url, ...) as chat APIs define them; the one rule
    # is a textual "type", which readers dispatch on.
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise ValueError(f"text must be at most {MAX_TEXT} characters")
        return value
    if not isinstance(value, list):
        raise ValueError("must be text or a list of content parts")
    if len(value) > MAX_PARTS:
        raise ValueError(f"must have at most {MAX_PARTS} content parts")
    for i, part in enumerate(value):
        if not isinstance(part, dict):
            raise ValueError(f"content part {i} must be an object with a 'type'")
        kind = part.get("type")
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"content part {i} needs a non-empty string 'type'")
    return value


Content = Annotated[str | list[dict[str, Any]], PlainValidator(_content)]


@register
class MessageAppended(Event):
    """A chat message. v2 adds an id, tool calls, ``tool_call_id``, ``additional_kwargs``
    and content as a list of parts; a v1 payload is upcast (it is a v2 one without them)."""

    TYPE: ClassVar[str] = "message.appended"
    VERSION: ClassVar[int] = 2
    SESSION: ClassVar[SessionRule] = "required"
    role: Annotated[str, Field(pattern=r"^[a-z_]{1,32}$")]
    content: Content
    name: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    id: MessageId | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list, max_length=256)
    tool_call_id: MessageId | None = None
    additional_kwargs: dict[str, Any] = Field(default_factory=dict)

    def payload(self, *, json_safe: bool = False) -> dict[str, Any]:
        # The common message (text content, plain meta, no v2 field) is built directly:
        # model_dump of it gives the same dict at three times the cost, on every append.
        if (
            not json_safe
            and type(self.content) is str
            and not (self.tool_calls or self.additional_kwargs or self.id or self.tool_call_id)
            and _plain(self.meta)
        ):
            return {"role": self.role, "content": self.content, "name": self.name,
                    "meta": dict(self.meta)}  # fmt: skip
        # Unset v2 fields stay out of the log: a plain message costs the bytes it did in v1
        # (max_event_bytes), and the model's defaults restore them on read.
        data = super().payload(json_safe=json_safe)
        for name in _V2_OPTIONAL:
            if not data.get(name):
                data.pop(name, None)
        return data

    def text(self) -> str:
        """The message's searchable text: the content, or its text parts joined."""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(
            str(part.get("text", "")) for part in self.content if part.get("type") == "text"
        )


_V2_OPTIONAL = ("id", "tool_calls", "tool_call_id", "additional_kwargs")
_PLAIN = frozenset({str, int, float, bool, type(None)})


def _plain(value: dict[str, Any]) -> bool:
    """True when ``value`` holds only str keys, JSON scalars, plain dicts and lists: what
    ``model_dump`` returns as an equal copy (it converts models, dataclasses, tuples)."""
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if type(item) is dict:
            for key, child in item.items():
                if type(key) is not str:
                    return False
                if type(child) not in _PLAIN:
                    stack.append(child)
        elif type(item) is list:
            stack += [c for c in item if type(c) not in _PLAIN]
        else:
            return False
    return True


@upcaster("message.appended", 1)
def _message_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    # v1 had role, content (text), name and meta; every v2 addition has a default, so
    # the payload carries over unchanged. Kept explicit so the chain is visible.
    return dict(data)


@register
class HistoryCleared(Event):
    TYPE: ClassVar[str] = "history.cleared"
    SESSION: ClassVar[SessionRule] = "required"


@register
class StateSaved(Event):
    TYPE: ClassVar[str] = "state.saved"
    state: dict[str, Any]


@register
class SessionStarted(Event):
    TYPE: ClassVar[str] = "session.started"
    SESSION: ClassVar[SessionRule] = "required"
    previous: Id | None = None


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


_ITEMSIZE = {"float16": 2, "float32": 4, "float64": 8}


@register
class TensorRecorded(Event):
    TYPE: ClassVar[str] = "tensor.recorded"
    shape: list[Annotated[int, Field(ge=1)]] = Field(min_length=1, max_length=8)
    dtype: Literal["float16", "float32", "float64"] = "float32"
    data: Blob
    groups: dict[Id, list[Annotated[int, Field(ge=0)]]] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)
    kind: Id = "state"  # tensors: the model family (docs/tensors.md)
    bounds: dict[Id, float] = Field(default_factory=dict)  # tensors: group -> max rel. error

    @model_validator(mode="after")
    def _size_matches_shape(self) -> TensorRecorded:
        expected = math.prod(self.shape) * _ITEMSIZE[self.dtype]
        if len(self.data) != expected:
            raise ValueError(
                f"data has {len(self.data)} bytes; shape {self.shape} of {self.dtype} "
                f"needs {expected}"
            )
        tensor_rules(self.groups, self.bounds, self.data, self.dtype)  # tensors
        return self


@register
class TensorModelPublished(Event):
    """A tensor model version (docs/tensors.md): its weights live content-addressed under
    ``keys.tensor_model(sha256)``; replay re-encodes with the versions the log names."""

    TYPE: ClassVar[str] = "tensor.model_published"
    kind: Id
    scope: Id | None = None
    version: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    config: dict[str, Any]


@register
class OwnerForgotten(Event):
    TYPE: ClassVar[str] = "owner.forgotten"
    reason: str = ""
