"""One root exception with a shallow tree; driver errors are wrapped where we meet the driver."""

from __future__ import annotations


class MemstreamError(Exception):
    """Root of every error memstream raises on purpose."""


class InvalidInputError(MemstreamError, ValueError):
    """Input broke a rule. ``field`` and ``rule`` say which, so callers can report it."""

    def __init__(self, field: str, rule: str, value: object = None) -> None:
        self.field = field
        self.rule = rule
        self.value = value
        shown = "" if value is None else f" (got {_preview(value)})"
        super().__init__(f"{field}: {rule}{shown}")


class InvalidIdError(InvalidInputError):
    """An owner, session or other id is outside the allowed alphabet or length."""


class AppendRejectedError(MemstreamError):
    """Redis refused an append: ``ms_append`` answered ``ERR memstream: <reason>``."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"append rejected by Redis: {reason}")


class NotInitialisedError(MemstreamError):
    """The deployment has no ``ms:meta`` or no functions loaded: run ``memstream init``."""


class ConfigError(MemstreamError, ValueError):
    """A setting or deployment parameter is invalid or conflicts with stored state."""


def _preview(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class RedisUnavailableError(MemstreamError, ConnectionError):
    """Redis could not be reached (refused, reset, DNS, TLS handshake); ``address`` says where."""

    def __init__(self, address: str, detail: str = "") -> None:
        self.address = address
        super().__init__(f"cannot reach Redis at {address}" + (f": {detail}" if detail else ""))


class RedisTimeoutError(MemstreamError, TimeoutError):
    """Redis did not answer within the deadline (frozen, overloaded or far away)."""


class NotReplicatedError(RedisTimeoutError):
    """An append reached its primary, but fewer replicas than ``Settings.wait_replicas``
    acknowledged it in time: it may be stored and may still be lost if that primary dies.
    Retry with the same ``eid`` (the retry writes nothing twice and waits again)."""


class AuthenticationError(MemstreamError):
    """Redis refused the credentials; ``username`` names the user, never the password."""

    def __init__(self, address: str, username: str | None) -> None:
        self.address = address
        self.username = username
        who = f"user {username!r}" if username else "the default user"
        super().__init__(f"Redis at {address} refused the password of {who}")


class PermissionDeniedError(MemstreamError):
    """The ACL user lacks a permission the operation needs (``NOPERM``)."""


class ServerBusyError(MemstreamError):
    """Redis answered but cannot serve now: ``LOADING``, ``BUSY``, ``TRYAGAIN``, ``CLUSTERDOWN``,
    ``MASTERDOWN`` or ``READONLY`` after a failover. Retrying later is the cure."""


class NotSupportedError(MemstreamError):
    """The server or its topology does not support what was asked (a Cluster reply with
    cluster mode off, a Redis older than 7.0)."""
