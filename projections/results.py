"""Typed read results: frozen, slotted dataclasses that also read as the dicts they were.

Every read of :class:`~memstream.projections.reader.Reader` and ``AsyncReader`` returns one
of these (or a list of them) with the same fields the dicts had. Attribute access is typed
(``page.items[0].task``); the Mapping side keeps dict code working: ``r["task"]``,
``r.get("x")``, ``keys()``, ``items()``, ``{**r}``, ``dict(r)``, ``r == {...}`` (equal to a
dict of the same fields and values) and :meth:`Result.to_dict` (plain dicts all the way
down, for ``json.dumps``). Results are immutable; ``to_dict()`` gives a copy to change.

Documents whose fields the user chooses (``state``, ``session_data``) stay plain dicts.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

R = TypeVar("R", bound="Result")
T = TypeVar("T")


def plain(value: Any) -> Any:
    """``value`` with every :class:`Result` inside it turned into a dict."""
    if isinstance(value, Result):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


class Result(Mapping[str, Any]):
    """Base of every read result: a read-only Mapping over the dataclass's fields.

    A field named in ``_optional`` is left out of the mapping while it is None, as the
    dict left out a key it did not have (a message's ``name``, a skill's ``stats``)."""

    __slots__ = ()
    __match_args__: ClassVar[tuple[str, ...]]
    _optional: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def of(cls: type[R], data: Any) -> R:
        """The result holding ``data``'s fields; a key it does not know is dropped (a
        newer writer's field), a field ``data`` lacks takes its default."""
        try:
            return cls(**data)
        except TypeError:
            known = cls.__match_args__
            return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def maybe(cls: type[R], data: Any) -> R | None:
        """:meth:`of` ``data``, or None when ``data`` is None."""
        return None if data is None else cls.of(data)

    @classmethod
    def many(cls: type[R], rows: Any) -> list[R]:
        """:meth:`of` each of ``rows``."""
        return [cls.of(row) for row in rows]

    def __getitem__(self, key: str) -> Any:
        if key in self.__match_args__:
            value = getattr(self, key)
            if value is not None or key not in self._optional:
                return value
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        optional = self._optional
        for name in self.__match_args__:
            if not optional or name not in optional or getattr(self, name) is not None:
                yield name

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Result):
            return type(self) is type(other) and self.to_dict() == other.to_dict()
        if isinstance(other, Mapping):
            return bool(self.to_dict() == plain(dict(other)))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # unhashable, as a dict

    def __repr__(self) -> str:
        # Printed as the dict it reads as, named: Skill({'name': ..., 'stats': SkillStats({...})})
        return f"{type(self).__name__}({dict(self.items())!r})"

    def to_dict(self) -> dict[str, Any]:
        """The result as plain dicts and lists (a fresh copy, safe to change)."""
        return {name: plain(self[name]) for name in self}


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Message(Result):
    """One history message: ``role``, ``content`` (a string or parts) and its time ``ts``
    (ms), plus ``name``, ``meta``, ``id``, ``tool_calls``, ``tool_call_id`` and
    ``additional_kwargs`` when the message has them."""

    _optional: ClassVar[frozenset[str]] = frozenset(
        {"name", "meta", "id", "tool_calls", "tool_call_id", "additional_kwargs"}
    )
    log_id: str
    role: str
    content: Any
    ts: int
    name: str | None = None
    meta: dict[str, Any] | None = None
    id: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    additional_kwargs: dict[str, Any] | None = None


_new = object.__new__
# The slots' own setters: they skip the frozen __setattr__ and the keyword parsing of
# __init__, about half of a message's construction cost (docs/benchmarks.md).
(_log_id, _role, _content, _ts, _name, _meta, _id, _tool_calls, _tool_call_id,
 _additional) = (Message.__dict__[f].__set__ for f in Message.__match_args__)  # fmt: skip
_MESSAGE_FIELDS = ("log_id", "role", "content", "ts", "name", "meta", "id", "tool_calls",
                   "tool_call_id", "additional_kwargs")  # fmt: skip
assert Message.__match_args__ == _MESSAGE_FIELDS, "message_of must set every field"


def message_of(log_id: str, body: dict[str, Any]) -> Message:
    """The :class:`Message` at ``log_id`` with the stored ``body`` (what history wrote:
    :func:`~memstream.projections.history.message_body`), built as ``Message.of`` builds
    it (an unknown key dropped, a missing optional field None) without ``__init__``: this
    runs for every message of every history read."""
    try:
        get = body.get
        role, content, ts = body["role"], body["content"], body["ts"]
    except (AttributeError, KeyError, TypeError):
        return Message.of({"log_id": log_id, **body})  # raises as Message.of does
    m = _new(Message)
    _log_id(m, log_id)
    _role(m, role)
    _content(m, content)
    _ts(m, ts)
    _name(m, get("name"))
    _meta(m, get("meta"))
    _id(m, get("id"))
    _tool_calls(m, get("tool_calls"))
    _tool_call_id(m, get("tool_call_id"))
    _additional(m, get("additional_kwargs"))
    return m


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class SessionInfo(Result):
    """A session and its first and last activity (ms; ``created_ms`` None when the
    session was never started explicitly)."""

    session: str
    created_ms: int | None
    last_active_ms: int


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Step(Result):
    """One working-memory step."""

    log_id: str
    action: str
    observation: str = ""
    reasoning: str = ""
    success: bool | None = None
    session: str | None = None
    ts: int = 0


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Episode(Result):
    """A saved episode; in a context also its ``owner`` and search ``score``."""

    _optional: ClassVar[frozenset[str]] = frozenset({"owner", "score"})
    log_id: str
    episode_id: str
    task: str
    outcome: str = ""
    success: bool | None = None
    duration_s: float = 0.0
    tags: list[str] = field(default_factory=list)
    importance: float = 0.5
    ts: int = 0
    session: str | None = None
    owner: str | None = None
    score: float | None = None


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Knowledge(Result):
    """A learned fact or pattern; in a context also its ``owner`` and ``score``."""

    _optional: ClassVar[frozenset[str]] = frozenset({"owner", "score"})
    log_id: str
    knowledge_id: str
    description: str
    kind: str = "fact"
    confidence: float = 0.5
    tags: list[str] = field(default_factory=list)
    ts: int = 0
    owner: str | None = None
    score: float | None = None


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class SkillStats(Result):
    """Executions, successes, success rate, mean and p95 duration (s), and the last run
    (``{"ts", "success", "duration_s"}``); rates and durations are None before a run."""

    executions: int
    successes: int
    success_rate: float | None
    mean_duration_s: float | None
    p95_duration_s: float | None
    last_run: dict[str, Any] | None


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Skill(Result):
    """A skill's definition; ``stats`` when read by :meth:`Reader.skill` or in a context,
    ``owner`` and ``score`` in a context."""

    _optional: ClassVar[frozenset[str]] = frozenset({"stats", "owner", "score"})
    log_id: str
    name: str
    actions: list[str] = field(default_factory=list)
    description: str = ""
    tags: list[str] = field(default_factory=list)
    ts: int = 0
    stats: SkillStats | None = None
    owner: str | None = None
    score: float | None = None


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Page(Result, Generic[T]):
    """One page of a listing: its ``entries`` (the mapping's ``"items"``, as the dict had
    them) and the ``cursor`` of the next page (None: the last)."""

    entries: list[T]
    cursor: str | None

    def __getitem__(self, key: str) -> Any:
        if key == "items":
            return self.entries
        if key == "cursor":
            return self.cursor
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        yield from ("items", "cursor")


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Pattern(Result):
    """An observed pattern's frequency, fix verdicts and its last observation."""

    pattern: str
    frequency: int
    accepted: int
    rejected: int
    acceptance_rate: float | None
    last: dict[str, Any] | None


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Insights(Result):
    """Top ``patterns`` and ``issue_kinds`` (``{"issue_kind", "frequency"}``) with totals."""

    patterns: list[Pattern]
    issue_kinds: list[dict[str, Any]]
    observations: int
    distinct_patterns: int
    fix_outcomes: int
    acceptance_rate: float | None


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class LogEntry(Result):
    """One log entry, decoded: its ``type``, schema version ``v``, ``session``, ``eid``
    and JSON-safe ``data``; an entry that cannot be decoded has only ``error`` set."""

    _optional: ClassVar[frozenset[str]] = frozenset({"type", "v", "data", "error"})
    log_id: str
    type: str | None = None
    v: int | None = None
    session: str | None = None
    eid: str | None = None
    data: dict[str, Any] | None = None
    error: str | None = None

    def __iter__(self) -> Iterator[str]:
        # An unreadable entry is {"log_id", "error"}; a readable one never has "error".
        if self.error is not None:
            yield from ("log_id", "error")
        else:
            yield from ("log_id", "type", "v", "session", "eid", "data")


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class WorldNode(Result):
    """One world-model node: its ``path`` (most specific first) and, per variable,
    ``counts``, ``predictive`` and the predictive's ``entropy`` (nats)."""

    path: list[str]
    variables: dict[str, dict[str, Any]]


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class ExplorationHit(Result):
    """A stored pattern ranked for a trigger: its counts, ``tags``, ``overlap`` with the
    context, success ``estimate`` and ``score`` (overlap x estimate)."""

    pattern: str
    tries: int
    successes: int
    success_rate: float
    mean_reward: float
    tags: dict[str, int]
    last_used_ms: int | None
    overlap: float
    estimate: float
    score: float


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class TensorState(Result):
    """A decoded state tensor (see docs/tensors.md): ``array`` (numpy), its ``log_id``,
    ``time_ms``, ``session``, ``meta``, ``shape``, ``dtype``, ``model`` (version or None),
    per group ``codecs``, ``errors`` and ``bounds``, ``stored_bytes``, ``raw_bytes``."""

    log_id: str
    time_ms: int
    session: str | None
    meta: dict[str, Any]
    shape: list[int]
    dtype: str
    array: Any
    model: str | None
    codecs: dict[str, str]
    errors: dict[str, float]
    bounds: dict[str, Any]
    stored_bytes: int
    raw_bytes: int
    note: str | None = None

    __hash__ = None

    def __eq__(self, other: object) -> bool:
        # numpy arrays compare elementwise: compare them apart from the other fields.
        if not isinstance(other, Mapping):
            return NotImplemented
        if set(other) != set(self):
            return False
        import numpy as np

        return all(
            bool(np.array_equal(self.array, other[k])) if k == "array" else self[k] == other[k]
            for k in self
        )


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Context(Result):
    """A prompt-ready context: ``text`` within the budget, the items chosen for each
    section in ``sections`` (by name: ``working``, ``episodes``, ``skills``, ``knowledge``
    and any a custom projection declares), and the ``owner`` and ``query`` it is for.

    As a mapping each section is a key of its own (``ctx["episodes"]``), as before, and
    an attribute too (``ctx.episodes``)."""

    text: str
    owner: str
    query: str
    sections: dict[str, list[Any]]

    def __getitem__(self, key: str) -> Any:
        if key in ("text", "owner", "query"):
            return getattr(self, key)
        if key in self.sections:
            return self.sections[key]
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        yield from self.sections
        yield from ("text", "owner", "query")

    def __getattr__(self, name: str) -> Any:
        # Only reached for names that are not fields: a section's items, or an error.
        sections = object.__getattribute__(self, "sections")
        if name in sections:
            return sections[name]
        raise AttributeError(name)


__all__ = [
    "Context",
    "Episode",
    "ExplorationHit",
    "Insights",
    "Knowledge",
    "LogEntry",
    "Message",
    "Page",
    "Pattern",
    "Result",
    "SessionInfo",
    "Skill",
    "SkillStats",
    "Step",
    "TensorState",
    "WorldNode",
]
