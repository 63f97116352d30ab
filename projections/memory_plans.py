"""The plans of long-term-memory reads: pure functions of the active deployment that build
:class:`~.base.Query` plans, which :class:`~.reads_memory.AsyncMemoryReads` and its
blocking twin both run, and the functions that type their results."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from memstream.producers import keys
from memstream.producers.deployment import Deployment
from memstream.producers.errors import InvalidInputError

from .base import Query, pk_of, then
from .context import ContextSection, check_budget, compose_context
from .item_reads import Order, read_count, read_item, read_page
from .patterns import fixes_key, learning_key, read_log, read_patterns
from .results import Context, Insights, Page, Pattern, Skill, SkillStats
from .search import Scope, SearchPlan, check_filters, check_limit, query_tokens
from .search_modes import Request
from .skills import read_skill_stats
from .working import read_working

Since = datetime | int | float | None
"""A time filter: a datetime, or Unix seconds."""
CONTEXT_HITS = 24
CONTEXT_STEPS = 10


def _now_ms() -> int:
    return int(time.time() * 1000)


def _since_ms(since: Since) -> int | None:
    if since is None:
        return None
    if isinstance(since, datetime):
        return int(since.timestamp() * 1000)
    if isinstance(since, bool) or not isinstance(since, int | float):
        raise InvalidInputError("since", "must be a datetime or Unix seconds", since)
    return int(since * 1000)


def _limit(limit: int, field: str = "limit") -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise InvalidInputError(field, "must be an integer between 1 and 1000", limit)
    return limit


# --- plans: built from the active deployment, run by either reader -----------------


def item_plan(d: Deployment, owner: str, kind: str, item_id: str) -> Query[Any]:
    return read_item(pk_of(d, owner), owner, kind, item_id)


def items_plan(
    d: Deployment, owner: str, kind: str, *, order: Order, limit: int, cursor: str | None
) -> Query[dict[str, Any]]:
    return read_page(
        pk_of(d, owner),
        owner,
        kind,
        order=order,
        limit=_limit(limit),
        cursor=cursor,
        now_ms=_now_ms(),
    )


def count_plan(d: Deployment, owner: str, kind: str) -> Query[int]:
    return read_count(pk_of(d, owner), owner, kind, _now_ms())


def skill_stats_plan(d: Deployment, owner: str, name: str) -> Query[dict[str, Any]]:
    keys.check_id(name, "name")
    return read_skill_stats(pk_of(d, owner), owner, name)


def skill_plan(d: Deployment, owner: str, name: str) -> Query[dict[str, Any] | None]:
    def with_stats(found: dict[str, Any] | None) -> Any:
        if found is None:
            return None
        return then(skill_stats_plan(d, owner, name), lambda stats: {**found, "stats": stats})

    return then(item_plan(d, owner, "skill", name), with_stats)


def insights_plan(d: Deployment, owner: str, top: int) -> Query[dict[str, Any]]:
    return read_patterns(pk_of(d, owner), owner, _limit(top, "top"))


def patterns_plan(d: Deployment, owner: str, limit: int, offset: int) -> Query[list[Any]]:
    _limit(limit)
    return then(insights_plan(d, owner, 1000), lambda f: f["patterns"][offset : offset + limit])


def pattern_plan(d: Deployment, owner: str, name: str) -> Query[dict[str, Any] | None]:
    keys.check_id(name, "name")
    return then(
        insights_plan(d, owner, 1000),
        lambda f: next((p for p in f["patterns"] if p["pattern"] == name), None),
    )


def fixes_plan(d: Deployment, owner: str, last: int) -> Query[list[dict[str, Any]]]:
    return read_log(fixes_key(pk_of(d, owner), owner), _limit(last, "last"))


def learning_plan(d: Deployment, owner: str, last: int) -> Query[list[dict[str, Any]]]:
    return read_log(learning_key(pk_of(d, owner), owner), _limit(last, "last"))


def search_request(
    d: Deployment,
    shared: Sequence[str],
    owner: str,
    query: str,
    *,
    types: Sequence[str] | None,
    tags: Sequence[str] = (),
    since: Since = None,
    success: bool | None = None,
    limit: int,
    cursor: str | None = None,
) -> Request:
    """A search's arguments checked (each error names its field), as one :class:`Request`
    over ``owner`` and the ``shared`` namespaces in deployment ``d``."""
    words = query_tokens(query)
    if isinstance(tags, str):  # one tag named alone, not its letters
        tags = (tags,)
    f = check_filters(types, [keys.check_id(t, "tags") for t in tags], _since_ms(since), success)
    check_limit(limit)
    if cursor is not None and not isinstance(cursor, str):
        raise InvalidInputError("cursor", "must be a string returned by search", cursor)
    owners = list(dict.fromkeys([keys.check_id(owner), *shared]))
    scopes = [Scope(o, pk_of(d, o)) for o in owners]
    return Request(scopes, query, words, f, limit, _now_ms())


def search_plan(
    d: Deployment,
    shared: Sequence[str],
    owner: str,
    query: str,
    *,
    types: Sequence[str] | None,
    tags: Sequence[str] = (),
    since: Since = None,
    success: bool | None = None,
    limit: int,
    cursor: str | None = None,
) -> Query[dict[str, Any]]:
    """The keyword (BM25) search plan; arguments as :func:`search_request`."""
    q = search_request(d, shared, owner, query, types=types, tags=tags, since=since,
                       success=success, limit=limit, cursor=cursor)  # fmt: skip
    if not q.words:
        empty: dict[str, Any] = {"hits": [], "cursor": None, "total": 0, "as_of_ms": q.now_ms}
        return Query([], lambda _: empty)
    return SearchPlan(q.scopes, q.words, q.filters, limit, q.now_ms, cursor).query()


def context_plan(
    d: Deployment,
    owner: str,
    query: str,
    budget: int,
    *,
    shared: Sequence[str],
    ttl_s: int,
    sections: Sequence[ContextSection],
) -> Query[Context]:
    """Search, then the recent steps, then the stats of each skill hit and the items of
    each section a projection reads itself (``ContextSection.read``); composed within
    ``budget`` characters (see :mod:`.context`)."""
    check_budget(budget)
    pk = pk_of(d, owner)
    custom = [s for s in sections if s.read is not None]

    def steps(found: dict[str, Any]) -> Query[Context]:
        recent = read_working(pk, owner, CONTEXT_STEPS, ttl_s)
        return then(recent, lambda rows: stats(found["hits"], rows))

    def stats(hits: list[dict[str, Any]], recent: list[dict[str, Any]]) -> Query[Context]:
        skills = [h for h in hits if h["type"] == "skill"]
        plans = [read_skill_stats(pk_of(d, h["owner"]), h["owner"], h["id"]) for h in skills]

        def parse(replies: list[Any]) -> dict[str, Any]:
            by_hit, at = {}, 0
            for hit, plan in zip(skills, plans, strict=True):
                n = len(plan.commands)
                by_hit[id(hit)] = plan.parse(replies[at : at + n])
                at += n
            items = {"working": [*reversed(recent)], "episodes": [], "skills": [], "knowledge": []}
            for hit in hits:
                entry = {
                    "log_id": hit["log_id"],
                    **hit["item"],
                    "owner": hit["owner"],
                    "score": hit["score"],
                }
                if id(hit) in by_hit:
                    entry["stats"] = by_hit[id(hit)]
                items[_SECTION[hit["type"]]].append(entry)
            return items

        commands = [c for plan in plans for c in plan.commands]
        return then(Query(commands, parse), lambda items: extra(items, 0))

    def extra(items: dict[str, list[Any]], i: int) -> Any:
        # Sections filled by their projection's own read: one round trip each.
        if i == len(custom):
            return compose_context(items, budget, sections, owner=owner, query=query)
        sec = custom[i]
        assert sec.read is not None
        return then(
            sec.read(pk, owner, query), lambda found: extra({**items, sec.name: list(found)}, i + 1)
        )

    return then(search_plan(d, shared, owner, query, types=None, limit=CONTEXT_HITS), steps)


_SECTION = {"episode": "episodes", "skill": "skills", "knowledge": "knowledge"}


def page_of(kind: type[Any], found: dict[str, Any]) -> Page[Any]:
    return Page(kind.many(found["items"]), found["cursor"])


def skill_of(found: dict[str, Any] | None) -> Skill | None:
    if found is None:
        return None
    return Skill.of({**found, "stats": SkillStats.of(found["stats"])})


def insights_of(found: dict[str, Any]) -> Insights:
    return Insights.of({**found, "patterns": Pattern.many(found["patterns"])})
