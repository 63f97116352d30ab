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


class ConfigError(MemstreamError):
    """A setting or deployment parameter is invalid or conflicts with stored state."""


def _preview(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
