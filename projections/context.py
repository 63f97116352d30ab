"""``Reader.context``: a prompt-ready context from working memory and search, within a
character budget, as structured data and as text.

Each projection declares its section (:class:`ContextSection`: the key of its items, a
title, how one item becomes a line, and its rank); the built-in ones, in this order: recent
working steps (the owner's own, never shared), the most relevant episodes, matching
skills with their success rates, and knowledge. Lines are
taken round-robin across sections (best first within each), so a long section cannot
crowd the others out; a line that does not fit is shortened with an ellipsis, or left
out when not even its start fits. The text never exceeds ``budget_chars``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from memstream.producers.errors import InvalidInputError

LINE_CHARS = 400
"""One item never takes more than this: many short items beat one long one."""
MIN_LINE = 24


@dataclass(frozen=True, slots=True)
class ContextSection:
    """A projection's part of the context: ``name`` keys its items, ``title`` heads it,
    ``line`` renders one item, and sections appear by ascending ``rank``."""

    name: str
    title: str
    line: Callable[[dict[str, Any]], str]
    rank: int = 100


def check_budget(budget_chars: int) -> int:
    if isinstance(budget_chars, bool) or not isinstance(budget_chars, int):
        raise InvalidInputError("budget_chars", "must be an integer", budget_chars)
    if not 1 <= budget_chars <= 1_000_000:
        raise InvalidInputError("budget_chars", "must be between 1 and 1000000", budget_chars)
    return budget_chars


def _clip(text: str, room: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= room else text[: max(0, room - 1)] + "…"


def step_line(step: dict[str, Any]) -> str:
    mark = {True: "ok", False: "failed", None: "?"}[step.get("success")]
    parts = [f"[{mark}] {step['action']}"]
    if step.get("observation"):
        parts.append(f"-> {step['observation']}")
    return " ".join(parts)


def episode_line(e: dict[str, Any]) -> str:
    mark = {True: "success", False: "failure", None: "unknown"}[e.get("success")]
    line = f"({mark}) {e['task']}"
    if e.get("outcome"):
        line += f" -> {e['outcome']}"
    return line


def skill_line(s: dict[str, Any]) -> str:
    stats = s.get("stats") or {}
    rate, runs = stats.get("success_rate"), stats.get("executions", 0)
    shown = f"success {rate:.0%} of {runs} runs" if rate is not None else "never run"
    return f"{s['name']} ({shown}): {s.get('description', '')}"


def knowledge_line(k: dict[str, Any]) -> str:
    return f"({k['kind']}, confidence {k['confidence']:.2f}) {k['description']}"


@functools.cache
def default_sections() -> tuple[ContextSection, ...]:
    """The sections the registered projections declare, by rank."""
    from .registry import context_sections, default_projections  # the registry imports us

    return tuple(context_sections(default_projections()))


def compose(
    items: dict[str, list[dict[str, Any]]],
    budget_chars: int,
    sections: Sequence[ContextSection] | None = None,
) -> dict[str, Any]:
    """Pick lines round-robin within the budget; return the chosen items and the text.

    ``items`` maps a section's name to its items, best first; ``budget_chars`` caps the
    text; ``sections`` defaults to the registered projections' (:func:`default_sections`).
    """
    shown = default_sections() if sections is None else tuple(sections)
    chosen: dict[str, list[tuple[dict[str, Any], str]]] = {sec.name: [] for sec in shown}
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
