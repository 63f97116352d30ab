"""LangChain messages <-> ``message.appended`` v2, field by field.

The v2 event has a field for each thing LangChain's messages carry in common: the role,
content (text or parts), ``name``, ``id``, ``tool_calls``, ``tool_call_id`` and
``additional_kwargs``. What only some LangChain types carry (``response_metadata``,
``usage_metadata``, ``invalid_tool_calls``, a tool message's ``status`` and ``artifact``,
a ``ChatMessage``'s free role, bare strings among content parts) goes under
``meta["langchain"]``, so every message reads back as the one that was written.
Requires ``langchain-core`` (``pip install 'memstream[langchain]'``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

from memstream.producers.errors import InvalidInputError
from memstream.producers.events_messages import MessageAppended
from memstream.producers.helpers import make

ROLES: tuple[tuple[type[BaseMessage], str], ...] = (
    (HumanMessage, "user"),
    (AIMessage, "assistant"),
    (SystemMessage, "system"),
    (ToolMessage, "tool"),
    (FunctionMessage, "function"),
    (ChatMessage, "chat"),
)
"""LangChain's message classes (and their chunks, which subclass them) -> memstream's
role (OpenAI's names, as the history read model uses)."""

_CLASSES: dict[str, type[BaseMessage]] = {
    "user": HumanMessage,
    "assistant": AIMessage,
    "system": SystemMessage,
    "tool": ToolMessage,
    "function": FunctionMessage,
    "chat": ChatMessage,
}
_EXTRA_FIELDS = ("response_metadata", "usage_metadata", "invalid_tool_calls", "status",
                 "artifact", "role")  # fmt: skip
"""Fields some LangChain types have and the v2 event has not: kept in meta["langchain"]."""
LC_META = "langchain"


def to_event(message: BaseMessage) -> MessageAppended:
    """One LangChain message as a ``message.appended`` v2 event (chunks as their type);
    :class:`InvalidInputError` (naming the field) when it breaks the event's rules."""
    role = next((r for cls, r in ROLES if isinstance(message, cls)), None)
    if role is None:
        raise InvalidInputError("message", "is not a LangChain message type memstream maps",
                                message.type)  # fmt: skip
    content, str_parts = _content_in(message.content)
    extra: dict[str, Any] = {}
    fields = type(message).model_fields
    for name in _EXTRA_FIELDS:
        if name in fields:
            value = getattr(message, name)
            if value != fields[name].get_default(call_default_factory=True):
                extra[name] = value
    if str_parts:
        extra["str_parts"] = str_parts
    calls = [
        {"name": c["name"], "arguments": c["args"], "id": c.get("id")}
        for c in getattr(message, "tool_calls", None) or []
    ]
    event = make(
        MessageAppended,
        role=role,
        content=content,
        name=message.name,
        id=message.id,
        tool_calls=calls,
        tool_call_id=getattr(message, "tool_call_id", None),
        additional_kwargs=dict(message.additional_kwargs),
        meta={LC_META: extra} if extra else {},
    )
    assert isinstance(event, MessageAppended)
    return event


def from_body(body: Mapping[str, Any]) -> BaseMessage:
    """A history entry (``Reader.history``) back as the LangChain message it was."""
    role = body["role"]
    cls = _CLASSES.get(role, ChatMessage)
    extra = dict((body.get("meta") or {}).get(LC_META) or {})
    fields: dict[str, Any] = {
        "content": _content_out(body["content"], extra.pop("str_parts", [])),
        "additional_kwargs": dict(body.get("additional_kwargs") or {}),
    }
    for name in ("name", "id", "tool_call_id"):
        if body.get(name) is not None:
            fields[name] = body[name]
    if body.get("tool_calls"):
        fields["tool_calls"] = [
            {"name": c["name"], "args": c.get("arguments", {}), "id": c.get("id"),
             "type": "tool_call"}
            for c in body["tool_calls"]
        ]  # fmt: skip
    if cls is ChatMessage and "role" not in extra:
        extra["role"] = role  # a role LangChain has no class for (written by another client)
    fields.update(extra)
    return cls(**fields)


def _content_in(content: str | list[str | dict[Any, Any]]) -> tuple[Any, list[int]]:
    """Content for the event: parts must be dicts, so bare strings become text parts and
    their positions are remembered."""
    if isinstance(content, str):
        return content, []
    parts: list[dict[str, Any]] = []
    str_parts: list[int] = []
    for i, part in enumerate(content):
        if isinstance(part, str):
            str_parts.append(i)
            parts.append({"type": "text", "text": part})
        else:
            parts.append(dict(part))
    return parts, str_parts


def _content_out(content: Any, str_parts: list[int]) -> Any:
    if isinstance(content, str) or not str_parts:
        return content
    wanted = set(str_parts)
    return [part["text"] if i in wanted else part for i, part in enumerate(content)]
