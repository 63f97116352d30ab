"""The one append core shared by :class:`Producer` and :class:`AsyncProducer`.

It is sans-I/O: it turns (owner, event, session, eid) into the ``FCALL ms_append`` command
and turns the reply or error back into a :class:`Receipt` or a memstream error. The sync
and async producers only add the transport, so no append logic is written twice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from redis.exceptions import ResponseError

from . import keys
from .codec import ContentType, encode
from .deployment import Deployment
from .errors import AppendRejectedError, InvalidInputError, MemstreamError, NotInitialisedError
from .events import Event, GenericEvent
from .receipt import Receipt
from .redact import Redactor


@dataclass(frozen=True, slots=True)
class Append:
    """One item of ``append_many``."""

    owner: str
    event: Event
    session: str | None = None
    eid: str | None = None


@dataclass(frozen=True, slots=True)
class Planned:
    owner: str
    partition: int
    command: tuple[Any, ...]


def new_eid() -> str:
    """Random idempotency key, made before the first try so every retry carries it."""
    return os.urandom(12).hex()


def invalid_from_pydantic(error: ValidationError) -> InvalidInputError:
    """Name the first failing field, keeping pydantic's message as the rule."""
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "event"
    return InvalidInputError(field, first["msg"], first.get("input"))


class AppendCore:
    def __init__(
        self, deployment: Deployment, redactor: Redactor, ct: ContentType = "msgpack"
    ) -> None:
        self.deployment = deployment
        self.redactor = redactor
        self.ct = ct

    def plan(self, item: Append) -> Planned:
        """Validate, redact and encode; raise :class:`InvalidInputError` before any I/O."""
        owner = keys.check_id(item.owner, "owner")
        event = item.event
        if not isinstance(event, Event):
            raise InvalidInputError("event", "must be a memstream Event model", event)
        command: list[Any] = []
        if item.session is not None:
            command += ["session", keys.check_id(item.session, "session")]
        elif event.SESSION == "required":
            raise InvalidInputError("session", f"is required for {event.event_type}")
        eid = new_eid() if item.eid is None else keys.check_id(item.eid, "eid")
        raw_payload = event.payload(json_safe=self.ct == "json")
        payload = self.redactor.scrub(raw_payload)
        if payload is not raw_payload and not isinstance(event, GenericEvent):
            # A redaction can turn an id-shaped field (an e-mail used as a tag, say) into
            # text that breaks its rule; refuse here rather than dead-letter downstream.
            try:
                type(event).model_validate(payload)
            except ValidationError as e:
                raise invalid_from_pydantic(e) from e
        data = encode(payload, self.ct)
        if len(data) > self.deployment.max_event_bytes:
            raise InvalidInputError(
                "data",
                f"encoded event is {len(data)} bytes, over max_event_bytes "
                f"{self.deployment.max_event_bytes}",
            )
        p = keys.partition(owner, self.deployment.partitions)
        # Not getattr(): a missing attribute on a pydantic model costs a raised
        # AttributeError inside pydantic's __getattr__, on every append.
        version = event.version if isinstance(event, GenericEvent) else event.VERSION
        command = [
            "FCALL", "ms_append", 2, keys.log(p, owner), keys.feed(p),
            "type", event.event_type, "data", data, "ct", self.ct, "eid", eid, "v", version,
            *command,
        ]  # fmt: skip
        return Planned(owner=owner, partition=p, command=tuple(command))

    @staticmethod
    def receipt(planned: Planned, reply: Any) -> Receipt:
        log_id, feed_id = reply
        return Receipt(
            owner=planned.owner,
            partition=planned.partition,
            log_id=log_id.decode() if isinstance(log_id, bytes) else str(log_id),
            feed_id=feed_id.decode() if isinstance(feed_id, bytes) else str(feed_id),
        )


def translate(error: ResponseError) -> MemstreamError:
    """Turn the driver's error into ours; the function's reason text is kept whole."""
    text = str(error)
    marker = "memstream: "
    if marker in text:
        reason = text.split(marker, 1)[1]
        if reason.startswith("deployment not initialised"):
            return NotInitialisedError(reason)
        return AppendRejectedError(reason)
    if "Function not found" in text or "function not found" in text.lower():
        return NotInitialisedError("ms_append is not loaded: run `memstream init`")
    return MemstreamError(text)


class AppendManyError(MemstreamError):
    """Some items of ``append_many`` were refused; the others were stored.

    ``receipts[i]`` is the receipt or ``None``; ``errors`` maps index to the error.
    """

    def __init__(self, receipts: list[Receipt | None], errors: dict[int, MemstreamError]):
        self.receipts = receipts
        self.errors = errors
        first = min(errors)
        super().__init__(
            f"{len(errors)} of {len(receipts)} appends failed; #{first}: {errors[first]}"
        )
