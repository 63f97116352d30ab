"""Chat-message events: ``message.appended`` (v2, rich messages) and ``history.cleared``.

Importing :mod:`memstream.producers.events` registers them (it re-exports both).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, PlainValidator

from .events import Event, SessionRule, register, upcaster

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
