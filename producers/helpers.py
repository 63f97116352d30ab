"""Convenience appends for the common events, shared by the sync and async producers.

Each helper only builds the event model and calls ``append``; whether that returns a
receipt or an awaitable of one is the producer's business, so nothing is written twice.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

from .core import invalid_from_pydantic
from .events import Event, SessionDataSet, SessionStarted, SessionTtlSet, StateSaved, StepRecorded
from .events_messages import HistoryCleared, MessageAppended
from .events_tensors import TensorRecorded
from .tensors import layout, read_array, split_groups

R = TypeVar("R")


def make(model: type[Event], **fields: Any) -> Event:
    """Build an event, turning pydantic's error into ours (it still names the field)."""
    try:
        return model(**fields)
    except ValidationError as e:
        raise invalid_from_pydantic(e) from e


class AppendHelpers(ABC, Generic[R]):
    @abstractmethod
    def append(
        self, owner: str, event: Event, *, session: str | None = None, eid: str | None = None
    ) -> R:
        """Append one event to ``owner``'s log."""

    def append_message(
        self,
        owner: str,
        session: str,
        role: str,
        content: str | list[Any],
        *,
        id: str | None = None,
        tool_calls: list[dict[str, Any]] | None = None,
        tool_call_id: str | None = None,
        additional_kwargs: dict[str, Any] | None = None,
        **extra: Any,
    ) -> R:
        """Append a chat message to a session's history.

        ``role`` and ``content`` (text, or a list of content parts each with a ``type``);
        ``id`` the message's own id; ``tool_calls`` a list of ``{"name", "arguments",
        "id"}``; ``tool_call_id`` the call a tool message answers; ``additional_kwargs``
        free provider data; ``extra`` the other fields (``name``, ``meta``).
        """
        rich: dict[str, Any] = {"id": id, "tool_call_id": tool_call_id}
        if tool_calls:
            rich["tool_calls"] = tool_calls
        if additional_kwargs:
            rich["additional_kwargs"] = additional_kwargs
        event = make(MessageAppended, role=role, content=content, **rich, **extra)
        return self.append(owner, event, session=session)

    def clear_history(self, owner: str, session: str) -> R:
        """Clear a session's history; older messages arriving late stay cleared."""
        return self.append(owner, make(HistoryCleared), session=session)

    def save_state(self, owner: str, state: dict[str, Any]) -> R:
        """Save the owner's state document (last writer wins by log id)."""
        return self.append(owner, make(StateSaved, state=state))

    def start_session(
        self, owner: str, session: str, previous: str | None = None, *, ttl_s: int | None = None
    ) -> R:
        """Start ``session`` of ``owner``, optionally linked to the ``previous`` one it
        rotates from. ``ttl_s`` chooses the session's own TTL: its history expires that
        many seconds after its newest message (0: never); unset keeps the default."""
        event = make(SessionStarted, previous=previous, ttl_s=ttl_s)
        return self.append(owner, event, session=session)

    def set_session_ttl(self, owner: str, session: str, ttl_s: int | None) -> R:
        """Choose the TTL of ``owner``'s ``session`` from now on: its history expires
        ``ttl_s`` seconds after its newest message (0: never; ``None``: the deployment's
        ``history_ttl_s``). A shorter TTL shortens the session's life."""
        return self.append(owner, make(SessionTtlSet, ttl_s=ttl_s), session=session)

    def set_session_data(self, owner: str, session: str, key: str, value: Any) -> R:
        """Set one key of a session's data (last writer wins per key)."""
        return self.append(owner, make(SessionDataSet, key=key, value=value), session=session)

    def record_step(
        self,
        owner: str,
        action: str,
        observation: str = "",
        reasoning: str = "",
        success: bool | None = None,
        *,
        session: str | None = None,
    ) -> R:
        """Record a working-memory step."""
        event = make(
            StepRecorded,
            action=action,
            observation=observation,
            reasoning=reasoning,
            success=success,
        )
        return self.append(owner, event, session=session)

    def record_tensor(
        self,
        owner: str,
        array: object,
        *,
        kind: str = "state",
        groups: Mapping[str, Sequence[float]] | None = None,
        meta: dict[str, Any] | None = None,
        session: str | None = None,
    ) -> R:
        """Record a state vector or tensor; workers store it compressed (docs/tensors.md).

        ``array``: a float16/32/64 numpy array, torch CPU tensor or any buffer; the log
        keeps its exact bytes. ``kind``: the model family it belongs to. ``groups``:
        ``{name: (start, end, max_relative_error)}`` over the flattened features; the
        rest keep the default bound. ``meta``: free metadata kept with the state.
        ``session``: optional session id. Raises InvalidInputError naming the field.
        """
        tensor = read_array(array)
        ranges, bounds = split_groups(groups)
        size = len(tensor.data) // {"float16": 2, "float32": 4, "float64": 8}[tensor.dtype]
        layout(ranges, bounds, size)
        event = make(
            TensorRecorded, shape=tensor.shape, dtype=tensor.dtype, data=tensor.data,
            groups=ranges, bounds=bounds, meta=meta or {}, kind=kind,
        )  # fmt: skip
        return self.append(owner, event, session=session)
