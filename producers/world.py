"""Producer side of the world model: configure a scenario, then observe evidence, checked.

The configuration travels as a ``world.configured`` event (so replay rebuilds it) and the
projection keeps the newest one by log id. :class:`World` checks every observation
against it before anything is appended: an unknown variable or outcome, or a path deeper
than the configured levels, raises :class:`InvalidInputError` naming the field. An
observation written around this check (raw, or a hand-built ``append``) is checked again
by the worker, which dead-letters it instead of counting it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import msgpack

from . import keys
from .errors import InvalidInputError
from .events import EvidenceObserved
from .events_world import ExplorationRecorded, WorldConfigured
from .helpers import AppendHelpers, make
from .producer import AsyncProducer, Producer
from .receipt import Receipt

R = TypeVar("R")

VERSION_LEN = 24
"""Width of the log-id prefix of a last-writer-wins value (projections/ops.py)."""


def sortable(log_id: str) -> str:
    """A log id as projections/ops.py versions LWW values (producers must not import it)."""
    ms, _, seq = log_id.partition("-")
    return f"{int(ms):013d}-{int(seq or 0):010d}"


CONF_FIELD = "c"
RELOAD_AFTER_S = 1.0
"""A configuration loaded from Redis is trusted this long; one this producer wrote is
trusted until it writes another (a rejection always reloads once before raising)."""


def conf_key(pk: keys.Projection, owner: str, scenario: str) -> str:
    """Hash holding the scenario's configuration (field ``c``, last writer wins)."""
    return pk.key("world_conf", owner, scenario)


@dataclass(frozen=True, slots=True)
class WorldConfig:
    """A scenario's configuration. ``ttl_s[i]`` is level Ω(i+1)'s TTL; 0 never expires."""

    scenario: str
    variables: Mapping[str, tuple[str, ...]]
    levels: int
    kappa: float
    alpha0: float
    ttl_s: tuple[int, ...] = ()

    @classmethod
    def of(cls, event: WorldConfigured) -> WorldConfig:
        return cls(
            scenario=event.scenario,
            variables={v: tuple(o) for v, o in event.variables.items()},
            levels=event.levels,
            kappa=event.kappa,
            alpha0=event.alpha0,
            ttl_s=tuple(t or 0 for t in event.ttl_s),
        )

    def stored(self) -> dict[str, Any]:
        """The value the projection stores; apply.lua's WOBS op reads it, so plain types."""
        return {
            "levels": self.levels,
            "kappa": self.kappa,
            "alpha0": self.alpha0,
            "variables": {v: list(o) for v, o in self.variables.items()},
            "ttl": list(self.ttl_s),
        }

    @classmethod
    def from_stored(cls, scenario: str, raw: bytes) -> WorldConfig:
        """Decode a stored ``<version><msgpack>`` value."""
        value = msgpack.unpackb(raw[VERSION_LEN:], raw=False)
        return cls(
            scenario=scenario,
            variables={v: tuple(o) for v, o in value["variables"].items()},
            levels=int(value["levels"]),
            kappa=float(value["kappa"]),
            alpha0=float(value["alpha0"]),
            ttl_s=tuple(int(t) for t in value["ttl"]),
        )

    def outcomes(self, variable: str) -> tuple[str, ...]:
        found = self.variables.get(variable)
        if found is None:
            raise InvalidInputError(
                "variable", f"is not configured in scenario {self.scenario}", variable
            )
        return found

    def check_path(self, path: Sequence[str]) -> None:
        if not path:
            raise InvalidInputError("path", "must name at least one node")
        if len(path) > self.levels:
            raise InvalidInputError(
                "path",
                f"has {len(path)} levels; scenario {self.scenario} is configured with "
                f"{self.levels}",
                list(path),
            )

    def check(self, event: EvidenceObserved) -> None:
        """Raise :class:`InvalidInputError` unless the observation fits this scenario."""
        if event.scenario != self.scenario:
            raise InvalidInputError("scenario", f"must be {self.scenario}", event.scenario)
        self.check_path(event.path)
        outcomes = self.outcomes(event.variable)
        if event.outcome not in outcomes:
            raise InvalidInputError(
                "outcome",
                f"must be one of {', '.join(outcomes)} (variable {event.variable} of "
                f"scenario {self.scenario})",
                event.outcome,
            )


def not_configured(owner: str, scenario: str) -> InvalidInputError:
    return InvalidInputError(
        "scenario",
        f"is not configured for {owner}: configure it (world.configured) and let a worker "
        "apply it first",
        scenario,
    )


class _Handle:
    """What both handles share: the event builders and the cached configuration."""

    def __init__(self, owner: str, scenario: str) -> None:
        self.owner = keys.check_id(owner, "owner")
        self.scenario = keys.check_id(scenario, "scenario")
        self._config: WorldConfig | None = None
        self._version = ""
        self._loaded_at = 0.0
        self._mine = False

    def _configured(self, **fields: Any) -> WorldConfigured:
        event = make(WorldConfigured, scenario=self.scenario, **fields)
        assert isinstance(event, WorldConfigured)
        return event

    def _observation(self, **fields: Any) -> EvidenceObserved:
        event = make(EvidenceObserved, scenario=self.scenario, **fields)
        assert isinstance(event, EvidenceObserved)
        return event

    def _fresh(self) -> bool:
        if self._config is None:
            return False
        return self._mine or time.monotonic() - self._loaded_at < RELOAD_AFTER_S

    def _remember(self, config: WorldConfig | None, version: str, *, mine: bool) -> None:
        self._config, self._version, self._mine = config, version, mine
        self._loaded_at = time.monotonic()

    def _loaded(self, raw: bytes | None) -> None:
        """Take the stored configuration unless the one this handle wrote is newer (not
        applied yet): versions are sortable log ids."""
        if raw is None:
            if not self._mine:
                self._remember(None, "", mine=False)
            return
        version = raw[:VERSION_LEN].decode()
        if not self._mine or version >= self._version:
            self._remember(WorldConfig.from_stored(self.scenario, raw), version, mine=False)

    def _key(self, partitions: int, raw_version: Any) -> str:
        version = int(raw_version or 1)
        pk = keys.Projection(keys.partition(self.owner, partitions), version)
        return conf_key(pk, self.owner, self.scenario)

    def _check(self, event: EvidenceObserved) -> None:
        if self._config is None:
            raise not_configured(self.owner, self.scenario)
        self._config.check(event)


class World(_Handle):
    """One owner's scenario through a blocking :class:`Producer`."""

    def __init__(self, producer: Producer, owner: str, scenario: str) -> None:
        super().__init__(owner, scenario)
        self.producer = producer

    def configure(self, variables: Mapping[str, Sequence[str]], **options: Any) -> Receipt:
        """Append ``world.configured`` (options: levels, kappa, alpha0, ttl_s)."""
        event = self._configured(variables={v: list(o) for v, o in variables.items()}, **options)
        receipt = self.producer.append(self.owner, event)
        self._remember(WorldConfig.of(event), sortable(receipt.log_id), mine=True)
        return receipt

    def config(self, *, reload: bool = False) -> WorldConfig | None:
        """The configuration observations are checked against (None: not configured)."""
        if reload or not self._fresh():
            partitions = self.producer.core().deployment.partitions
            key = self._key(partitions, self.producer.client.hget(keys.META, "version"))
            raw: Any = self.producer.client.hget(key, CONF_FIELD)
            self._loaded(raw)
        return self._config

    def observe(
        self, path: Sequence[str], variable: str, outcome: str, weight: float = 1.0,
        *, source: str | None = None,
    ) -> Receipt:  # fmt: skip
        """Append ``evidence.observed`` after checking it against the configuration."""
        event = self._observation(
            path=list(path), variable=variable, outcome=outcome, weight=weight, source=source
        )
        self.config()
        try:
            self._check(event)
        except InvalidInputError:
            self.config(reload=True)  # someone may have reconfigured: look once more
            self._check(event)
        return self.producer.append(self.owner, event)


class AsyncWorld(_Handle):
    """One owner's scenario through an :class:`AsyncProducer`."""

    def __init__(self, producer: AsyncProducer, owner: str, scenario: str) -> None:
        super().__init__(owner, scenario)
        self.producer = producer

    async def configure(self, variables: Mapping[str, Sequence[str]], **options: Any) -> Receipt:
        """Append ``world.configured`` (options: levels, kappa, alpha0, ttl_s)."""
        event = self._configured(variables={v: list(o) for v, o in variables.items()}, **options)
        receipt = await self.producer.append(self.owner, event)
        self._remember(WorldConfig.of(event), sortable(receipt.log_id), mine=True)
        return receipt

    async def config(self, *, reload: bool = False) -> WorldConfig | None:
        """The configuration observations are checked against (None: not configured)."""
        if reload or not self._fresh():
            partitions = (await self.producer.core()).deployment.partitions
            key = self._key(partitions, await self.producer.client.hget(keys.META, "version"))
            raw: Any = await self.producer.client.hget(key, CONF_FIELD)
            self._loaded(raw)
        return self._config

    async def observe(
        self, path: Sequence[str], variable: str, outcome: str, weight: float = 1.0,
        *, source: str | None = None,
    ) -> Receipt:  # fmt: skip
        """Append ``evidence.observed`` after checking it against the configuration."""
        event = self._observation(
            path=list(path), variable=variable, outcome=outcome, weight=weight, source=source
        )
        await self.config()
        try:
            self._check(event)
        except InvalidInputError:
            await self.config(reload=True)
            self._check(event)
        return await self.producer.append(self.owner, event)


def record_exploration(
    producer: AppendHelpers[R],
    owner: str,
    trigger: str,
    pattern: str,
    *,
    success: bool,
    reward: float = 0.0,
    context_tags: Sequence[str] = (),
) -> R:
    """Append ``exploration.recorded`` (a receipt, or an awaitable one for async)."""
    event = make(
        ExplorationRecorded, trigger=trigger, pattern=pattern, success=success, reward=reward,
        context_tags=list(context_tags),
    )  # fmt: skip
    return producer.append(owner, event)
