"""Reads of long-term memory: episodes, knowledge, skills, patterns, search, context.

Mixed into :class:`~memstream.projections.reader.AsyncReader` (AsyncMemoryReads) and the
blocking ``Reader`` (MemoryReads): each read is one line that runs a plan of
:mod:`.memory_plans` on the reader's client. Searches cover the owner and the reader's
``shared`` namespaces; working memory stays the owner's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .base import AsyncRunner, SyncRunner, doc_from
from .item_reads import Order
from .memory_plans import (
    Since,
    context_plan,
    count_plan,
    fixes_plan,
    insights_of,
    insights_plan,
    item_plan,
    items_plan,
    learning_plan,
    page_of,
    pattern_plan,
    patterns_plan,
    search_request,
    skill_of,
    skill_plan,
    skill_stats_plan,
)
from .results import Context, Episode, Insights, Knowledge, Page, Pattern, Skill, SkillStats
from .search_modes import SearchMode, check_mode, run_search


async def _search(
    r: AsyncRunner, owner: str, query: str, *, types: Sequence[str] | None,
    tags: Sequence[str] = (), since: Since = None, success: bool | None = None,
    limit: int, cursor: str | None = None, mode: SearchMode | None = None,
) -> dict[str, Any]:  # fmt: skip
    check_mode(mode)
    request = search_request(await r.deployment(), r.shared, owner, query, types=types,
                             tags=tags, since=since, success=success, limit=limit,
                             cursor=cursor)  # fmt: skip
    if not request.words and mode in (None, "keyword"):
        return {"hits": [], "cursor": None, "total": 0, "as_of_ms": request.now_ms,
                "mode": "keyword"}  # fmt: skip
    return await run_search(r, request, cursor=cursor, mode=mode)


class AsyncMemoryReads:
    # --- items: get by id, pages (newest first or by importance), live counts ---------

    async def episode(self: AsyncRunner, owner: str, episode_id: str) -> Episode | None:
        """``owner``'s live episode ``episode_id``, or None (never saved, deleted or
        expired)."""
        return Episode.maybe(await self._read(item_plan, owner, "episode", episode_id))

    async def episodes(
        self: AsyncRunner,
        owner: str,
        *,
        order: Order = "recent",
        limit: int = 20,
        cursor: str | None = None,
    ) -> Page[Episode]:
        """A page of ``owner``'s episodes, ``order`` ``"recent"`` (newest first) or
        ``"importance"``, at most ``limit`` (1 to 1,000); pass the page's ``cursor`` back
        as ``cursor`` for the next one."""
        return page_of(
            Episode,
            await self._read(items_plan, owner, "episode", order=order, limit=limit, cursor=cursor),
        )

    async def episode_count(self: AsyncRunner, owner: str) -> int:
        """``owner``'s live (saved, not deleted, not expired) episodes."""
        return await self._read(count_plan, owner, "episode")

    async def knowledge_item(self: AsyncRunner, owner: str, knowledge_id: str) -> Knowledge | None:
        """``owner``'s live knowledge item ``knowledge_id``, or None."""
        return Knowledge.maybe(await self._read(item_plan, owner, "knowledge", knowledge_id))

    async def knowledge(
        self: AsyncRunner,
        owner: str,
        *,
        order: Order = "recent",
        limit: int = 20,
        cursor: str | None = None,
    ) -> Page[Knowledge]:
        """A page of ``owner``'s knowledge, ``order`` ``"recent"`` or ``"importance"``
        (confidence), at most ``limit``; ``cursor`` continues a previous page."""
        return page_of(
            Knowledge,
            await self._read(
                items_plan, owner, "knowledge", order=order, limit=limit, cursor=cursor
            ),
        )

    async def knowledge_count(self: AsyncRunner, owner: str) -> int:
        """``owner``'s live knowledge items."""
        return await self._read(count_plan, owner, "knowledge")

    async def skill(self: AsyncRunner, owner: str, name: str) -> Skill | None:
        """``owner``'s skill ``name`` with its ``stats``; None when never defined or
        deleted."""
        return skill_of(await self._read(skill_plan, owner, name))

    async def skill_stats(self: AsyncRunner, owner: str, name: str) -> SkillStats:
        """Executions, successes, success rate, mean and p95 duration and last run of
        ``owner``'s skill ``name``."""
        return SkillStats.of(await self._read(skill_stats_plan, owner, name))

    async def skills(
        self: AsyncRunner,
        owner: str,
        *,
        order: Order = "recent",
        limit: int = 20,
        cursor: str | None = None,
    ) -> Page[Skill]:
        """A page of ``owner``'s skills, ``order`` ``"recent"`` or ``"importance"``, at most
        ``limit``; ``cursor`` continues a previous page."""
        return page_of(
            Skill,
            await self._read(items_plan, owner, "skill", order=order, limit=limit, cursor=cursor),
        )

    async def skill_count(self: AsyncRunner, owner: str) -> int:
        """``owner``'s live skills."""
        return await self._read(count_plan, owner, "skill")

    # --- patterns -------------------------------------------------------------------

    async def insights(self: AsyncRunner, owner: str, *, top: int = 10) -> Insights:
        """``owner``'s ``top`` (1 to 1,000) patterns and issue kinds by frequency, with
        acceptance rates."""
        return insights_of(await self._read(insights_plan, owner, top))

    async def patterns(
        self: AsyncRunner, owner: str, *, limit: int = 20, offset: int = 0
    ) -> list[Pattern]:
        """``owner``'s patterns by frequency (ties by name), each with its fix counts:
        ``limit`` (1 to 1,000) of them from ``offset``."""
        return Pattern.many(await self._read(patterns_plan, owner, limit, offset))

    async def pattern(self: AsyncRunner, owner: str, name: str) -> Pattern | None:
        """``owner``'s pattern ``name``: frequency, fix counts, last observation; or None."""
        return Pattern.maybe(await self._read(pattern_plan, owner, name))

    async def pattern_count(self: AsyncRunner, owner: str) -> int:
        """Distinct patterns ``owner`` observed."""
        return int((await self._read(insights_plan, owner, 1))["distinct_patterns"])

    async def fix_outcomes(
        self: AsyncRunner, owner: str, *, last: int = 100
    ) -> list[dict[str, Any]]:
        """``owner``'s ``last`` newest fix outcomes (at most 1,000 are kept), newest first."""
        return await self._read(fixes_plan, owner, last)

    async def learning_sessions(
        self: AsyncRunner, owner: str, *, last: int = 50
    ) -> list[dict[str, Any]]:
        """``owner``'s ``last`` newest learning sessions (at most 500 kept), newest first."""
        return await self._read(learning_plan, owner, last)

    # --- search and context ---------------------------------------------------------

    async def search(
        self: AsyncRunner, owner: str, query: str, *, types: Sequence[str] | None = None,
        tags: Sequence[str] = (), since: Since = None, success: bool | None = None,
        limit: int = 10, cursor: str | None = None, mode: SearchMode | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Search for ``query`` over ``owner`` and the reader's shared namespaces:
        ``types`` of memory (None: all), every one of ``tags``, saved at or after
        ``since``, with ``success`` when given; ``limit`` hits a page. ``mode`` is
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
        """:meth:`search` for ``query`` in every memory type of ``owner`` at once (episodes,
        knowledge, skills), with the same ``tags``, ``since``, ``success``, ``limit``,
        ``cursor`` and ``mode``."""
        return await _search(self, owner, query, types=None, tags=tags, since=since,
                             success=success, limit=limit, cursor=cursor, mode=mode)  # fmt: skip

    async def context(
        self: AsyncRunner, owner: str, query: str, *, budget_chars: int = 4000
    ) -> Context:
        """A prompt-ready context for ``owner`` and ``query``: recent steps, relevant
        episodes, skills with success rates, knowledge, and the sections of the reader's
        extra ``projections``; ``text`` stays within ``budget_chars`` (see :mod:`.context`)."""
        return await self._read(
            context_plan,
            owner,
            query,
            budget_chars,
            shared=self.shared,
            ttl_s=self.settings.working_ttl_s,
            sections=self.context_sections,
        )


class MemoryReads:
    """The blocking twins of :class:`AsyncMemoryReads`: the same plans, the same results."""

    @doc_from(AsyncMemoryReads.episode)
    def episode(self: SyncRunner, owner: str, episode_id: str) -> Episode | None:
        return Episode.maybe(self._read(item_plan, owner, "episode", episode_id))

    @doc_from(AsyncMemoryReads.episodes)
    def episodes(
        self: SyncRunner,
        owner: str,
        *,
        order: Order = "recent",
        limit: int = 20,
        cursor: str | None = None,
    ) -> Page[Episode]:
        return page_of(
            Episode,
            self._read(items_plan, owner, "episode", order=order, limit=limit, cursor=cursor),
        )

    @doc_from(AsyncMemoryReads.episode_count)
    def episode_count(self: SyncRunner, owner: str) -> int:
        return self._read(count_plan, owner, "episode")

    @doc_from(AsyncMemoryReads.knowledge_item)
    def knowledge_item(self: SyncRunner, owner: str, knowledge_id: str) -> Knowledge | None:
        return Knowledge.maybe(self._read(item_plan, owner, "knowledge", knowledge_id))

    @doc_from(AsyncMemoryReads.knowledge)
    def knowledge(
        self: SyncRunner,
        owner: str,
        *,
        order: Order = "recent",
        limit: int = 20,
        cursor: str | None = None,
    ) -> Page[Knowledge]:
        return page_of(
            Knowledge,
            self._read(items_plan, owner, "knowledge", order=order, limit=limit, cursor=cursor),
        )

    @doc_from(AsyncMemoryReads.knowledge_count)
    def knowledge_count(self: SyncRunner, owner: str) -> int:
        return self._read(count_plan, owner, "knowledge")

    @doc_from(AsyncMemoryReads.skill)
    def skill(self: SyncRunner, owner: str, name: str) -> Skill | None:
        return skill_of(self._read(skill_plan, owner, name))

    @doc_from(AsyncMemoryReads.skill_stats)
    def skill_stats(self: SyncRunner, owner: str, name: str) -> SkillStats:
        return SkillStats.of(self._read(skill_stats_plan, owner, name))

    @doc_from(AsyncMemoryReads.skills)
    def skills(
        self: SyncRunner,
        owner: str,
        *,
        order: Order = "recent",
        limit: int = 20,
        cursor: str | None = None,
    ) -> Page[Skill]:
        return page_of(
            Skill, self._read(items_plan, owner, "skill", order=order, limit=limit, cursor=cursor)
        )

    @doc_from(AsyncMemoryReads.skill_count)
    def skill_count(self: SyncRunner, owner: str) -> int:
        return self._read(count_plan, owner, "skill")

    @doc_from(AsyncMemoryReads.insights)
    def insights(self: SyncRunner, owner: str, *, top: int = 10) -> Insights:
        return insights_of(self._read(insights_plan, owner, top))

    @doc_from(AsyncMemoryReads.patterns)
    def patterns(
        self: SyncRunner, owner: str, *, limit: int = 20, offset: int = 0
    ) -> list[Pattern]:
        return Pattern.many(self._read(patterns_plan, owner, limit, offset))

    @doc_from(AsyncMemoryReads.pattern)
    def pattern(self: SyncRunner, owner: str, name: str) -> Pattern | None:
        return Pattern.maybe(self._read(pattern_plan, owner, name))

    @doc_from(AsyncMemoryReads.pattern_count)
    def pattern_count(self: SyncRunner, owner: str) -> int:
        return int(self._read(insights_plan, owner, 1)["distinct_patterns"])

    @doc_from(AsyncMemoryReads.fix_outcomes)
    def fix_outcomes(self: SyncRunner, owner: str, *, last: int = 100) -> list[dict[str, Any]]:
        return self._read(fixes_plan, owner, last)

    @doc_from(AsyncMemoryReads.learning_sessions)
    def learning_sessions(self: SyncRunner, owner: str, *, last: int = 50) -> list[dict[str, Any]]:
        return self._read(learning_plan, owner, last)

    @doc_from(AsyncMemoryReads.search)
    def search(
        self: SyncRunner, owner: str, query: str, *, types: Sequence[str] | None = None,
        tags: Sequence[str] = (), since: Since = None, success: bool | None = None,
        limit: int = 10, cursor: str | None = None, mode: SearchMode | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        # Through the async reader (its bridge, :mod:`.bridge`): semantic and hybrid
        # search have no blocking path yet.
        found: dict[str, Any] = self._call(self._async.search(
            owner, query, types=types, tags=tags, since=since, success=success, limit=limit,
            cursor=cursor, mode=mode))  # fmt: skip
        return found

    @doc_from(AsyncMemoryReads.search_all)
    def search_all(
        self: SyncRunner, owner: str, query: str, *, tags: Sequence[str] = (),
        since: Since = None, success: bool | None = None, limit: int = 10,
        cursor: str | None = None, mode: SearchMode | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        found: dict[str, Any] = self._call(self._async.search_all(
            owner, query, tags=tags, since=since, success=success, limit=limit,
            cursor=cursor, mode=mode))  # fmt: skip
        return found

    @doc_from(AsyncMemoryReads.context)
    def context(self: SyncRunner, owner: str, query: str, *, budget_chars: int = 4000) -> Context:
        return self._read(
            context_plan,
            owner,
            query,
            budget_chars,
            shared=self.shared,
            ttl_s=self.settings.working_ttl_s,
            sections=self.context_sections,
        )
