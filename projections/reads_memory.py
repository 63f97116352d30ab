"""Reads of long-term memory: episodes, knowledge, skills, patterns, search, context.

Mixed into :class:`~memstream.projections.reader.AsyncReader` (AsyncMemoryReads) and the
blocking ``Reader`` (MemoryReads). Searches cover the owner and the reader's ``shared``
namespaces; working memory stays the owner's own.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from memstream.producers import keys
from memstream.producers.errors import InvalidInputError

from .base import AsyncRunner, SyncRunner
from .context import check_budget, compose
from .item_reads import Order, read_count, read_item, read_page
from .patterns import fixes_key, learning_key, read_log, read_patterns
from .search import Scope, check_filters, check_limit, query_tokens
from .search_modes import Request, SearchMode, check_mode, run_search
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


async def _item(r: AsyncRunner, owner: str, kind: str, item_id: str) -> Any:
    return await r.run(read_item(await r._pk(owner), owner, kind, item_id))


async def _items(
    r: AsyncRunner, owner: str, kind: str, *, order: Order, limit: int, cursor: str | None
) -> dict[str, Any]:
    pk = await r._pk(owner)
    page = read_page(pk, owner, kind, order=order, limit=_limit(limit), cursor=cursor,
                     now_ms=_now_ms())  # fmt: skip
    return await r.run(page)


async def _count(r: AsyncRunner, owner: str, kind: str) -> int:
    return await r.run(read_count(await r._pk(owner), owner, kind, _now_ms()))


async def _skill_stats(r: AsyncRunner, owner: str, name: str) -> dict[str, Any]:
    keys.check_id(name, "name")
    return await r.run(read_skill_stats(await r._pk(owner), owner, name))


async def _insights(r: AsyncRunner, owner: str, top: int) -> dict[str, Any]:
    return await r.run(read_patterns(await r._pk(owner), owner, _limit(top, "top")))


async def _search(
    r: AsyncRunner, owner: str, query: str, *, types: Sequence[str] | None,
    tags: Sequence[str] = (), since: Since = None, success: bool | None = None,
    limit: int, cursor: str | None = None, mode: SearchMode | None = None,
) -> dict[str, Any]:  # fmt: skip
    words = query_tokens(query)
    check_mode(mode)
    if isinstance(tags, str):  # one tag named alone, not its letters
        tags = (tags,)
    f = check_filters(types, [keys.check_id(t, "tags") for t in tags], _since_ms(since), success)
    check_limit(limit)
    if cursor is not None and not isinstance(cursor, str):
        raise InvalidInputError("cursor", "must be a string returned by search", cursor)
    owners = list(dict.fromkeys([keys.check_id(owner), *r.shared]))
    scopes = [Scope(o, await r._pk(o)) for o in owners]
    if not words and mode in (None, "keyword"):
        return {"hits": [], "cursor": None, "total": 0, "as_of_ms": _now_ms(), "mode": "keyword"}
    request = Request(scopes, query, words, f, limit, _now_ms())
    return await run_search(r, request, cursor=cursor, mode=mode)


class AsyncMemoryReads:
    # --- items: get by id, pages (newest first or by importance), live counts ---------

    async def episode(self: AsyncRunner, owner: str, episode_id: str) -> dict[str, Any] | None:
        """One live episode, or None (never saved, deleted or expired)."""
        return await _item(self, owner, "episode", episode_id)  # type: ignore[no-any-return]

    async def episodes(
        self: AsyncRunner, owner: str, *, order: Order = "recent", limit: int = 20,
        cursor: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """``{"items", "cursor"}``: newest first, or most important first."""
        return await _items(self, owner, "episode", order=order, limit=limit, cursor=cursor)

    async def episode_count(self: AsyncRunner, owner: str) -> int:
        """Live (saved, not deleted, not expired) episodes."""
        return await _count(self, owner, "episode")

    async def knowledge_item(
        self: AsyncRunner, owner: str, knowledge_id: str
    ) -> dict[str, Any] | None:
        return await _item(self, owner, "knowledge", knowledge_id)  # type: ignore[no-any-return]

    async def knowledge(
        self: AsyncRunner, owner: str, *, order: Order = "recent", limit: int = 20,
        cursor: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """``{"items", "cursor"}``: newest first, or by confidence."""
        return await _items(self, owner, "knowledge", order=order, limit=limit, cursor=cursor)

    async def knowledge_count(self: AsyncRunner, owner: str) -> int:
        return await _count(self, owner, "knowledge")

    async def skill(self: AsyncRunner, owner: str, name: str) -> dict[str, Any] | None:
        """A skill's definition with its ``stats``; None when never defined or deleted."""
        found = await _item(self, owner, "skill", name)
        if found is None:
            return None
        return {**found, "stats": await _skill_stats(self, owner, name)}

    async def skill_stats(self: AsyncRunner, owner: str, name: str) -> dict[str, Any]:
        """Executions, successes, success rate, mean and p95 duration, last run."""
        return await _skill_stats(self, owner, name)

    async def skills(
        self: AsyncRunner, owner: str, *, order: Order = "recent", limit: int = 20,
        cursor: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        return await _items(self, owner, "skill", order=order, limit=limit, cursor=cursor)

    async def skill_count(self: AsyncRunner, owner: str) -> int:
        return await _count(self, owner, "skill")

    # --- patterns -------------------------------------------------------------------

    async def insights(self: AsyncRunner, owner: str, *, top: int = 10) -> dict[str, Any]:
        """Top patterns and issue kinds by frequency, with acceptance rates."""
        return await _insights(self, owner, top)

    async def patterns(
        self: AsyncRunner, owner: str, *, limit: int = 20, offset: int = 0
    ) -> list[dict[str, Any]]:
        """Patterns by frequency (ties by name), each with its fix counts."""
        found = await _insights(self, owner, 1000)
        return list(found["patterns"][offset : offset + _limit(limit)])

    async def pattern(self: AsyncRunner, owner: str, name: str) -> dict[str, Any] | None:
        """One pattern's frequency, fix counts and last observation, or None."""
        keys.check_id(name, "name")
        found = await _insights(self, owner, 1000)
        return next((p for p in found["patterns"] if p["pattern"] == name), None)

    async def pattern_count(self: AsyncRunner, owner: str) -> int:
        """Distinct patterns observed."""
        return int((await _insights(self, owner, 1))["distinct_patterns"])

    async def fix_outcomes(self: AsyncRunner, owner: str, *, last: int = 100) -> list[Any]:
        """The newest fix outcomes (at most 1,000 are kept), newest first."""
        key = fixes_key(await self._pk(owner), owner)
        return await self.run(read_log(key, _limit(last, "last")))

    async def learning_sessions(self: AsyncRunner, owner: str, *, last: int = 50) -> list[Any]:
        """The newest learning sessions (at most 500 are kept), newest first."""
        key = learning_key(await self._pk(owner), owner)
        return await self.run(read_log(key, _limit(last, "last")))

    # --- search and context ---------------------------------------------------------

    async def search(
        self: AsyncRunner, owner: str, query: str, *, types: Sequence[str] | None = None,
        tags: Sequence[str] = (), since: Since = None, success: bool | None = None,
        limit: int = 10, cursor: str | None = None, mode: SearchMode | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Search over the owner and the reader's shared namespaces: ``mode``
        ``"keyword"`` (BM25), ``"semantic"`` (cosine over the stored vectors) or
        ``"hybrid"`` (rank fusion of both); None is hybrid once vectors exist, else keyword.

        Returns ``{"hits", "cursor", "total", "as_of_ms", "mode"}``; pass ``cursor`` back
        for the next page. Filters select hits; they never change scores (docs/search.md)."""
        return await _search(self, owner, query, types=types, tags=tags, since=since,
                             success=success, limit=limit, cursor=cursor, mode=mode)  # fmt: skip

    async def search_all(
        self: AsyncRunner, owner: str, query: str, *, tags: Sequence[str] = (),
        since: Since = None, success: bool | None = None, limit: int = 10,
        cursor: str | None = None, mode: SearchMode | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Search every memory type at once (episodes, knowledge, skills); ``mode`` as
        for :meth:`search`."""
        return await _search(self, owner, query, types=None, tags=tags, since=since,
                             success=success, limit=limit, cursor=cursor, mode=mode)  # fmt: skip

    async def context(
        self: AsyncRunner, owner: str, query: str, *, budget_chars: int = 4000
    ) -> dict[str, Any]:
        """Prompt-ready context: recent steps, relevant episodes, skills with success
        rates, knowledge; ``text`` stays within ``budget_chars`` (see :mod:`.context`)."""
        check_budget(budget_chars)
        # Keyword: the context's sections keep their documented selection (docs/search.md).
        found = await _search(self, owner, query, types=None, limit=CONTEXT_HITS, mode="keyword")
        pk = await self._pk(owner)
        steps = await self.run(read_working(pk, owner, CONTEXT_STEPS, self.settings.working_ttl_s))
        steps.reverse()  # newest first: the most recent steps matter most
        items: dict[str, list[dict[str, Any]]] = {"working": steps, "episodes": [],
                                                  "skills": [], "knowledge": []}  # fmt: skip
        section = {"episode": "episodes", "skill": "skills", "knowledge": "knowledge"}
        for hit in found["hits"]:
            entry = {**hit["item"], "owner": hit["owner"], "score": hit["score"]}
            if hit["type"] == "skill":
                entry["stats"] = await _skill_stats(self, hit["owner"], hit["id"])
            items[section[hit["type"]]].append(entry)
        return {**compose(items, budget_chars), "owner": owner, "query": query}


def _sync(name: str) -> Any:
    """A blocking method that runs the async reader's method of the same name."""

    def method(self: SyncRunner, *args: Any, **kwargs: Any) -> Any:
        return self._call(getattr(self._async, name)(*args, **kwargs))

    method.__name__ = name
    method.__doc__ = getattr(AsyncMemoryReads, name).__doc__
    return method


class MemoryReads:
    """Blocking twins of :class:`AsyncMemoryReads` (same arguments, same results)."""

    episode = _sync("episode")
    episodes = _sync("episodes")
    episode_count = _sync("episode_count")
    knowledge_item = _sync("knowledge_item")
    knowledge = _sync("knowledge")
    knowledge_count = _sync("knowledge_count")
    skill = _sync("skill")
    skill_stats = _sync("skill_stats")
    skills = _sync("skills")
    skill_count = _sync("skill_count")
    insights = _sync("insights")
    patterns = _sync("patterns")
    pattern = _sync("pattern")
    pattern_count = _sync("pattern_count")
    fix_outcomes = _sync("fix_outcomes")
    learning_sessions = _sync("learning_sessions")
    search = _sync("search")
    search_all = _sync("search_all")
    context = _sync("context")
