"""Reads of the world model and exploration patterns.

Mixed into :class:`~memstream.projections.reader.AsyncReader` (AsyncWorldReads) and the
blocking ``Reader`` (WorldReads); methods annotate ``self`` with the runner protocols of
:mod:`.base` and run the same plans. Every world read is one pipelined round trip (two for
a summary); shrinkage runs here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from memstream.producers import keys
from memstream.producers.deployment import Deployment
from memstream.producers.errors import InvalidInputError
from memstream.producers.world import WorldConfig

from .base import AsyncRunner, Query, SyncRunner, doc_from, pk_of
from .exploration import read_exploration
from .results import ExplorationHit, WorldNode
from .world import Chain, read_chain, read_config, read_summary
from .world_math import credible_interval


def _mass(mass: float) -> float:
    if not (isinstance(mass, float | int) and 0 < mass < 1):
        raise InvalidInputError("mass", "must be strictly between 0 and 1", mass)
    return float(mass)


def _limit(limit: int) -> int:
    if not 1 <= limit <= 1000:
        raise InvalidInputError("limit", "must be between 1 and 1000", limit)
    return limit


# --- plans: built from the active deployment, run by either reader -----------------


def _config(d: Deployment, owner: str, scenario: str) -> Query[WorldConfig | None]:
    keys.check_id(scenario, "scenario")
    return read_config(pk_of(d, owner), owner, scenario)


def _chain(
    d: Deployment, owner: str, scenario: str, path: Sequence[str], variable: str
) -> Query[Chain]:
    keys.check_id(scenario, "scenario")
    keys.check_id(variable, "variable")
    return read_chain(pk_of(d, owner), owner, scenario, path, variable)


def _summary(d: Deployment, owner: str, scenario: str, level: int) -> Query[list[dict[str, Any]]]:
    keys.check_id(scenario, "scenario")
    return read_summary(pk_of(d, owner), owner, scenario, level)


def _exploration(
    d: Deployment, owner: str, trigger: str, context_tags: Sequence[str], *, limit: int,
    seed: int | None,
) -> Query[list[dict[str, Any]]]:  # fmt: skip
    keys.check_id(trigger, "trigger")
    tags = [keys.check_id(t, "context_tags") for t in context_tags]
    return read_exploration(pk_of(d, owner), owner, trigger, tags, limit=_limit(limit), seed=seed)


def _interval(chain: Chain, outcome: str, mass: float) -> tuple[float, float]:
    alpha = chain.node.alpha[chain.index(outcome)]
    return credible_interval(alpha, chain.node.total - alpha, mass)


def _most_likely(chain: Chain) -> tuple[str, float]:
    predicted = chain.predict()
    best = max(predicted, key=lambda o: predicted[o])
    return best, predicted[best]


def _surprise(chain: Chain, outcome: str) -> float:
    return -math.log(chain.node.mean[chain.index(outcome)])


class AsyncWorldReads:
    async def world_config(self: AsyncRunner, owner: str, scenario: str) -> WorldConfig | None:
        """``owner``'s newest applied configuration of ``scenario``, or None."""
        return await self._read(_config, owner, scenario)

    async def world_predict(
        self: AsyncRunner, owner: str, scenario: str, path: Sequence[str], variable: str
    ) -> dict[str, float]:
        """Posterior predictive over ``variable``'s outcomes at ``path[0]`` (the most
        specific node) of ``owner``'s ``scenario``, every level shrunk toward its parent."""
        return (await self._read(_chain, owner, scenario, path, variable)).predict()

    async def world_interval(
        self: AsyncRunner, owner: str, scenario: str, path: Sequence[str], variable: str,
        outcome: str, *, mass: float = 0.9,
    ) -> tuple[float, float]:  # fmt: skip
        """Equal-tailed credible interval holding ``mass`` of ``outcome``'s probability
        for ``variable`` at ``path[0]`` of ``owner``'s ``scenario``, from the Beta
        marginal Beta(alpha_k, sum(alpha) - alpha_k) of its posterior."""
        mass = _mass(mass)
        return _interval(await self._read(_chain, owner, scenario, path, variable), outcome, mass)

    async def world_most_likely(
        self: AsyncRunner, owner: str, scenario: str, path: Sequence[str], variable: str
    ) -> tuple[str, float]:
        """The most probable outcome of ``variable`` at ``path[0]`` of ``owner``'s
        ``scenario``, and its probability (ties: configured order)."""
        return _most_likely(await self._read(_chain, owner, scenario, path, variable))

    async def world_surprise(
        self: AsyncRunner, owner: str, scenario: str, path: Sequence[str], variable: str,
        outcome: str,
    ) -> float:  # fmt: skip
        """-ln p(``outcome``) of ``variable`` at ``path[0]`` under ``owner``'s current
        model of ``scenario``, in nats: high means novel."""
        return _surprise(await self._read(_chain, owner, scenario, path, variable), outcome)

    async def world_summary(
        self: AsyncRunner, owner: str, scenario: str, level: int = 1
    ) -> list[WorldNode]:
        """Every observed node of ``level`` (1 = most specific) of ``owner``'s
        ``scenario`` with, per variable, its counts, predictive and the predictive's
        entropy (nats)."""
        return WorldNode.many(await self._read(_summary, owner, scenario, level))

    async def exploration(
        self: AsyncRunner, owner: str, trigger: str, context_tags: Sequence[str] = (),
        limit: int = 10, seed: int | None = None,
    ) -> list[ExplorationHit]:  # fmt: skip
        """``owner``'s stored patterns for ``trigger`` ranked by Jaccard(``context_tags``,
        tags) x success estimate: the Beta(1+s, 1+f) mean, or a Thompson draw seeded by
        ``seed``; at most ``limit`` (1 to 1,000)."""
        found = await self._read(_exploration, owner, trigger, context_tags, limit=limit, seed=seed)
        return ExplorationHit.many(found)


class WorldReads:
    """The blocking twins of :class:`AsyncWorldReads`: the same plans, the same results."""

    @doc_from(AsyncWorldReads.world_config)
    def world_config(self: SyncRunner, owner: str, scenario: str) -> WorldConfig | None:
        return self._read(_config, owner, scenario)

    @doc_from(AsyncWorldReads.world_predict)
    def world_predict(
        self: SyncRunner, owner: str, scenario: str, path: Sequence[str], variable: str
    ) -> dict[str, float]:
        return self._read(_chain, owner, scenario, path, variable).predict()

    @doc_from(AsyncWorldReads.world_interval)
    def world_interval(
        self: SyncRunner, owner: str, scenario: str, path: Sequence[str], variable: str,
        outcome: str, *, mass: float = 0.9,
    ) -> tuple[float, float]:  # fmt: skip
        mass = _mass(mass)
        return _interval(self._read(_chain, owner, scenario, path, variable), outcome, mass)

    @doc_from(AsyncWorldReads.world_most_likely)
    def world_most_likely(
        self: SyncRunner, owner: str, scenario: str, path: Sequence[str], variable: str
    ) -> tuple[str, float]:
        return _most_likely(self._read(_chain, owner, scenario, path, variable))

    @doc_from(AsyncWorldReads.world_surprise)
    def world_surprise(
        self: SyncRunner, owner: str, scenario: str, path: Sequence[str], variable: str,
        outcome: str,
    ) -> float:  # fmt: skip
        return _surprise(self._read(_chain, owner, scenario, path, variable), outcome)

    @doc_from(AsyncWorldReads.world_summary)
    def world_summary(
        self: SyncRunner, owner: str, scenario: str, level: int = 1
    ) -> list[WorldNode]:
        return WorldNode.many(self._read(_summary, owner, scenario, level))

    @doc_from(AsyncWorldReads.exploration)
    def exploration(
        self: SyncRunner, owner: str, trigger: str, context_tags: Sequence[str] = (),
        limit: int = 10, seed: int | None = None,
    ) -> list[ExplorationHit]:  # fmt: skip
        found = self._read(_exploration, owner, trigger, context_tags, limit=limit, seed=seed)
        return ExplorationHit.many(found)
