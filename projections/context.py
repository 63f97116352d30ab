"""``Reader.context``: a prompt-ready context from working memory and search, within a
character budget, as structured data and as text.

Each projection declares its section (:class:`ContextSection`: the key of its items, a
title, how one item becomes a line, its rank, and for a projection of your own the read
that finds its items); the built-in ones, in this order: recent working steps (the owner's
own, never shared), the most relevant episodes, matching skills with their success rates,
and knowledge. A reader fills the sections of the extra projections it is given
(``Reader(settings, projections=[...])``). Lines are
taken round-robin across sections (best first within each), so a long section cannot
crowd the others out; a line that does not fit is shortened with an ellipsis, or left
out when not even its start fits. The text never exceeds ``budget_chars``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from memstream.producers import keys
from memstream.producers.errors import InvalidInputError

from .results import Context, Episode, Knowledge, Result, Skill, SkillStats, Step

if TYPE_CHECKING:
    from .base import Projection, Query

LINE_CHARS = 400
"""One item never takes more than this: many short items beat one long one."""
MIN_LINE = 24


@dataclass(frozen=True, slots=True)
class ContextSection:
    """A projection's part of the context: ``name`` keys its items, ``title`` heads it,
    ``line`` renders one item, and sections appear by ascending ``rank``.

    ``read``, for a projection of your own: ``read(pk, owner, query)`` returns the plan
    (:class:`~.base.Query`) of the section's items for ``owner`` and the context's
    ``query``, best first (``pk``: the active version's keys of ``owner``'s partition).
    The built-in sections leave it None: search and working memory fill them."""

    name: str
    title: str
    line: Callable[[Mapping[str, Any]], str]
    rank: int = 100
    read: Callable[[keys.Projection, str, str], Query[Any]] | None = None


def check_budget(budget_chars: int) -> int:
    if isinstance(budget_chars, bool) or not isinstance(budget_chars, int):
        raise InvalidInputError("budget_chars", "must be an integer", budget_chars)
    if not 1 <= budget_chars <= 1_000_000:
        raise InvalidInputError("budget_chars", "must be between 1 and 1000000", budget_chars)
    return budget_chars


def _clip(text: str, room: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= room else text[: max(0, room - 1)] + "…"


def step_line(step: Mapping[str, Any]) -> str:
    mark = {True: "ok", False: "failed", None: "?"}[step.get("success")]
    parts = [f"[{mark}] {step['action']}"]
    if step.get("observation"):
        parts.append(f"-> {step['observation']}")
    return " ".join(parts)


def episode_line(e: Mapping[str, Any]) -> str:
    mark = {True: "success", False: "failure", None: "unknown"}[e.get("success")]
    line = f"({mark}) {e['task']}"
    if e.get("outcome"):
        line += f" -> {e['outcome']}"
    return line


def skill_line(s: Mapping[str, Any]) -> str:
    stats = s.get("stats") or {}
    rate, runs = stats.get("success_rate"), stats.get("executions", 0)
    shown = f"success {rate:.0%} of {runs} runs" if rate is not None else "never run"
    return f"{s['name']} ({shown}): {s.get('description', '')}"


def knowledge_line(k: Mapping[str, Any]) -> str:
    return f"({k['kind']}, confidence {k['confidence']:.2f}) {k['description']}"


@functools.cache
def default_sections() -> tuple[ContextSection, ...]:
    """The sections the registered projections declare, by rank."""
    from .registry import context_sections, default_projections  # the registry imports us

    return tuple(context_sections(default_projections()))


def sections_with(extra: Iterable[Projection]) -> tuple[ContextSection, ...]:
    """The built-in sections and those the ``extra`` projections declare, by rank."""
    found = [p.context for p in extra if p.context is not None]
    if not found:
        return default_sections()
    return tuple(sorted([*default_sections(), *found], key=lambda s: s.rank))


_TYPES: dict[str, type[Result]] = {
    "working": Step, "episodes": Episode, "skills": Skill, "knowledge": Knowledge,
}  # fmt: skip


def _typed(name: str, item: Any) -> Any:
    kind = _TYPES.get(name)
    if kind is None or isinstance(item, Result):
        return item  # a custom section's items are what its read returned
    if kind is Skill and item.get("stats") is not None:
        item = {**item, "stats": SkillStats.of(item["stats"])}
    return kind.of(item)


def compose_context(
    items: dict[str, list[Any]], budget_chars: int, sections: Sequence[ContextSection], *,
    owner: str, query: str,
) -> Context:  # fmt: skip
    """The typed :class:`~.results.Context` of :func:`compose` over ``items`` (by section
    name) within ``budget_chars``, for ``owner`` and ``query``."""
    typed = {name: [_typed(name, i) for i in found] for name, found in items.items()}
    out = compose(typed, budget_chars, sections)
    text = out.pop("text")
    return Context(text=text, owner=owner, query=query, sections=out)


def compose(
    items: Mapping[str, Sequence[Mapping[str, Any]]],
    budget_chars: int,
    sections: Sequence[ContextSection] | None = None,
) -> dict[str, Any]:
    """Pick lines round-robin within the budget; return the chosen items and the text.

    ``items`` maps a section's name to its items, best first; ``budget_chars`` caps the
    text; ``sections`` defaults to the registered projections' (:func:`default_sections`).
    """
    shown = default_sections() if sections is None else tuple(sections)
    chosen: dict[str, list[tuple[Mapping[str, Any], str]]] = {sec.name: [] for sec in shown}
    used, depth = 0, 0
    while True:
        progressed = False
        for sec in shown:
            name, title = sec.name, sec.title
            if depth >= len(items.get(name, [])):
                continue
            progressed = True
            header = 0 if chosen[name] else len(f"## {title}\n") + (1 if used else 0)
            room = min(LINE_CHARS, budget_chars - used - header - 3)  # "- " and "\n"
            if room < MIN_LINE:
                continue
            item = items[name][depth]
            line = _clip(sec.line(item), room)
            chosen[name].append((item, line))
            used += header + len(line) + 3
        depth += 1
        if not progressed:
            break
    blocks = []
    for sec in shown:
        if chosen[sec.name]:
            lines = "".join(f"- {line}\n" for _, line in chosen[sec.name])
            blocks.append(f"## {sec.title}\n" + lines)
    text = "\n".join(blocks)
    assert len(text) <= budget_chars, (len(text), budget_chars)
    out: dict[str, Any] = {sec.name: [item for item, _ in chosen[sec.name]] for sec in shown}
    out["text"] = text
    return out
