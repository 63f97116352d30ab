"""Reads of the world model and exploration patterns.

Mixed into :class:`~memstream.projections.reader.AsyncReader` (AsyncWorldReads) and the blocking
``Reader`` (WorldReads); methods annotate ``self`` with the runner protocols of :mod:`.base`.
Every world read is one pipelined round trip (two for a summary); shrinkage runs here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from memstream.producers import keys
from memstream.producers.errors import InvalidInputError
from memstream.producers.world import WorldConfig

from .base import AsyncRunner, SyncRunner
from .exploration import read_exploration
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


async def _chain(
    runner: AsyncRunner, owner: str, scenario: str, path: Sequence[str], variable: str
) -> Chain:
    keys.check_id(scenario, "scenario")
    keys.check_id(variable, "variable")
    return await runner.run(read_chain(await runner._pk(owner), owner, scenario, path, variable))


class AsyncWorldReads:
    async def world_config(self: AsyncRunner, owner: str, scenario: str) -> WorldConfig | None:
        """The scenario's newest applied configuration, or None."""
        keys.check_id(scenario, "scenario")
        return await self.run(read_config(await self._pk(owner), owner, scenario))

    async def world_predict(
        self: AsyncRunner, owner: str, scenario: str, path: Sequence[str], variable: str
    ) -> dict[str, float]:
        """Posterior predictive over the variable's outcomes at ``path[0]`` (most specific
        node), every level shrunk toward its parent."""
        return (await _chain(self, owner, scenario, path, variable)).predict()

    async def world_interval(
        self: AsyncRunner, owner: str, scenario: str, path: Sequence[str], variable: str,
        outcome: str, *, mass: float = 0.9,
    ) -> tuple[float, float]:  # fmt: skip
        """Equal-tailed credible interval for the outcome's probability at ``path[0]``,
        from the Beta marginal Beta(alpha_k, sum(alpha) - alpha_k) of its posterior."""
        chain = await _chain(self, owner, scenario, path, variable)
        alpha = chain.node.alpha[chain.index(outcome)]
        return credible_interval(alpha, chain.node.total - alpha, _mass(mass))

    async def world_most_likely(
        self: AsyncRunner, owner: str, scenario: str, path: Sequence[str], variable: str
    ) -> tuple[str, float]:
        """The most probable outcome and its probability (ties: configured order)."""
        predicted = (await _chain(self, owner, scenario, path, variable)).predict()
        best = max(predicted, key=lambda o: predicted[o])
        return best, predicted[best]

    async def world_surprise(
        self: AsyncRunner,
        owner: str,
        scenario: str,
        path: Sequence[str],
        variable: str,
        outcome: str,
    ) -> float:
        """-ln p(outcome) under the current model, in nats: high means novel."""
        chain = await _chain(self, owner, scenario, path, variable)
        return -math.log(chain.node.mean[chain.index(outcome)])

    async def world_summary(
        self: AsyncRunner, owner: str, scenario: str, level: int = 1
    ) -> list[dict[str, Any]]:
        """Every observed node of ``level`` (1 = most specific) with, per variable, its
        counts, predictive and the predictive's entropy (nats)."""
        keys.check_id(scenario, "scenario")
        return await self.run(read_summary(await self._pk(owner), owner, scenario, level))

    async def exploration(
        self: AsyncRunner, owner: str, trigger: str, context_tags: Sequence[str] = (),
        limit: int = 10, seed: int | None = None,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """Stored patterns for ``trigger`` ranked by Jaccard(context, tags) x success
        estimate: the Beta(1+s, 1+f) mean, or a Thompson draw seeded by ``seed``."""
        keys.check_id(trigger, "trigger")
        tags = [keys.check_id(t, "context_tags") for t in context_tags]
        pk = await self._pk(owner)
        return await self.run(
            read_exploration(pk, owner, trigger, tags, limit=_limit(limit), seed=seed)
        )


class WorldReads:
    def world_config(self: SyncRunner, owner: str, scenario: str) -> WorldConfig | None:
        config: WorldConfig | None = self._call(self._async.world_config(owner, scenario))
        return config

    def world_predict(
        self: SyncRunner, owner: str, scenario: str, path: Sequence[str], variable: str
    ) -> dict[str, float]:
        return self._call(self._async.world_predict(owner, scenario, path, variable))

    def world_interval(
        self: SyncRunner, owner: str, scenario: str, path: Sequence[str], variable: str,
        outcome: str, *, mass: float = 0.9,
    ) -> tuple[float, float]:  # fmt: skip
        bounds: tuple[float, float] = self._call(
            self._async.world_interval(owner, scenario, path, variable, outcome, mass=mass)
        )
        return bounds

    def world_most_likely(
        self: SyncRunner, owner: str, scenario: str, path: Sequence[str], variable: str
    ) -> tuple[str, float]:
        best: tuple[str, float] = self._call(
            self._async.world_most_likely(owner, scenario, path, variable)
        )
        return best

    def world_surprise(
        self: SyncRunner, owner: str, scenario: str, path: Sequence[str], variable: str,
        outcome: str,
    ) -> float:  # fmt: skip
        nats: float = self._call(
            self._async.world_surprise(owner, scenario, path, variable, outcome)
        )
        return nats

    def world_summary(
        self: SyncRunner, owner: str, scenario: str, level: int = 1
    ) -> list[dict[str, Any]]:
        return self._call(self._async.world_summary(owner, scenario, level))

    def exploration(
        self: SyncRunner, owner: str, trigger: str, context_tags: Sequence[str] = (),
        limit: int = 10, seed: int | None = None,
    ) -> list[dict[str, Any]]:  # fmt: skip
        return self._call(self._async.exploration(owner, trigger, context_tags, limit, seed))
