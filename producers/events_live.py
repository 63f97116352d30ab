"""Event types of live session management: TTL extension. Importing
:mod:`memstream.producers` registers them."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field

from .events import Event, register

MAX_EXTENSION_S = 10 * 365 * 86_400


@register
class TtlExtended(Event):
    """Keep an active session's memory ``seconds`` from this event's time (never shorter).

    With a session: that session's history and data, and the owner's session index; the
    owner's working memory too. Without one: the session index and working memory only.
    Only memory types that have a TTL are touched: extending never adds an expiry.
    """

    TYPE: ClassVar[str] = "ttl.extended"
    seconds: Annotated[int, Field(ge=1, le=MAX_EXTENSION_S)]
