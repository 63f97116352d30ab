"""The one append core shared by :class:`Producer` and :class:`AsyncProducer`.

It is sans-I/O: it turns (owner, event, session, eid) into a :class:`Prepared` append
(validated, redacted, encoded; what the outbox stores), then into the ``FCALL ms_append``
command, and turns the reply back into a :class:`Receipt`. Errors are mapped where the
driver is met (:mod:`.driver`). The sync and async producers only add the transport, so
no append logic is written twice.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from . import keys
from .codec import ContentType, encode
from .deployment import Deployment
from .errors import InvalidInputError, MemstreamError
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


@dataclass(slots=True)
class Prepared:
    """A validated, redacted, encoded append that needs no deployment yet: ``args`` are
    ``ms_append``'s arguments after the two keys. This is what the outbox stores, so an
    append made while Redis (and so ``ms:meta``) is out of reach can still be kept.

    Treat it as read-only. It is not ``frozen``: a frozen dataclass's ``__init__`` costs
    twice as much, and every append builds one (as :class:`Planned`)."""

    owner: str
    eid: str
    args: tuple[Any, ...]


@dataclass(slots=True)
class Planned:
    owner: str
    partition: int
    command: tuple[Any, ...]
    eid: str | None = None


DATA_AT = 3
"""Where the encoded data sits in :attr:`Prepared.args` (``type, <t>, data, <bytes>``)."""


def command(owner: str, partition: int, args: Sequence[Any]) -> tuple[Any, ...]:
    """The ``FCALL ms_append`` command for one prepared append."""
    return ("FCALL", "ms_append", 2, keys.log(partition, owner), keys.feed(partition), *args)


_EIDS = random.Random()  # seeded from os.urandom


def new_eid() -> str:
    """Random idempotency key (96 bits), made before the first try so every retry carries
    it. From a private generator seeded by the OS, not ``os.urandom`` per call (a system
    call, the dearest part of making one): only uniqueness matters, and a private
    generator cannot be made to repeat by a caller's ``random.seed()``."""
    return _EIDS.randbytes(12).hex()


# A forked child would otherwise repeat its parent's eids, and a repeated eid is
# deduplicated away as a retry: silent loss. Reseed from the OS in every child.
os.register_at_fork(after_in_child=_EIDS.seed)


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
        return self.locate(prepare(item, self.redactor, self.ct))

    def check_size(self, prepared: Prepared) -> None:
        """Raise :class:`InvalidInputError` if the data is over ``max_event_bytes``."""
        size = len(prepared.args[DATA_AT])
        if size > self.deployment.max_event_bytes:
            raise InvalidInputError(
                "data",
                f"encoded event is {size} bytes, over max_event_bytes "
                f"{self.deployment.max_event_bytes}",
            )

    def locate(self, prepared: Prepared) -> Planned:
        """Check the size limit and aim the prepared append at its partition."""
        self.check_size(prepared)
        p = keys.partition(prepared.owner, self.deployment.partitions)
        return Planned(prepared.owner, p, command(prepared.owner, p, prepared.args), prepared.eid)

    @staticmethod
    def receipt(planned: Planned, reply: Any) -> Receipt:
        log_id, feed_id = reply
        return Receipt(
            owner=planned.owner,
            partition=planned.partition,
            log_id=log_id.decode() if isinstance(log_id, bytes) else str(log_id),
            feed_id=feed_id.decode() if isinstance(feed_id, bytes) else str(feed_id),
            eid=planned.eid,
        )


def prepare(item: Append, redactor: Redactor, ct: ContentType) -> Prepared:
    """Validate, redact and encode one append; raise :class:`InvalidInputError`."""
    return prepare_one(item.owner, item.event, item.session, item.eid, redactor=redactor, ct=ct)


def prepare_one(
    owner: str,
    event: Event,
    session: str | None,
    eid: str | None,
    *,
    redactor: Redactor,
    ct: ContentType,
) -> Prepared:
    """:func:`prepare` of one append given as its parts (``owner``, ``event``,
    ``session``, ``eid``), for the single-append path, which then builds no :class:`Append`."""
    owner = keys.check_id(owner, "owner")
    if not isinstance(event, Event):
        raise InvalidInputError("event", "must be a memstream Event model", event)
    if session is not None:
        session = keys.check_id(session, "session")
    elif event.SESSION == "required":
        raise InvalidInputError("session", f"is required for {event.event_type}")
    eid = new_eid() if eid is None else keys.check_id(eid, "eid")
    generic = isinstance(event, GenericEvent)
    raw_payload = event.payload(json_safe=ct == "json")
    payload = redactor.scrub(raw_payload)
    if payload is not raw_payload and not generic:
        # A redaction can turn an id-shaped field (an e-mail used as a tag, say) into
        # text that breaks its rule; refuse here rather than dead-letter downstream.
        try:
            type(event).model_validate(payload)
        except ValidationError as e:
            raise invalid_from_pydantic(e) from e
    data = encode(payload, ct)
    # Not getattr(): a missing attribute on a pydantic model costs a raised
    # AttributeError inside pydantic's __getattr__, on every append.
    version = event.version if generic else event.VERSION  # type: ignore[attr-defined]
    args: tuple[Any, ...] = ("type", event.event_type, "data", data, "ct", ct, "eid", eid,
                             "v", version)  # fmt: skip
    if session is not None:
        args += ("session", session)
    return Prepared(owner, eid, args)


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
