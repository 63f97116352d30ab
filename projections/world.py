"""The hierarchical Bayesian world model (``world.configured``, ``evidence.observed``).

Convergence: a scenario's configuration is one last-writer-wins value versioned by log
id. Evidence adds its weight, as an integer number of nano-units, to the Dirichlet count
of its outcome at every node of its path (HINCRBY commutes; the weight was rounded to nano
units when the event was validated, so the sums are exact). The node index keeps each
node's last observation time as a max. The WOBS op (apply.lua) checks the evidence against
the stored configuration and dead-letters it instead when it does not fit; reads use only
the configured variables, outcomes and levels, so counts of anything else never reach a
posterior.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from memstream.producers import keys
from memstream.producers.entry import StoredEvent
from memstream.producers.errors import InvalidInputError
from memstream.producers.events import EvidenceObserved
from memstream.producers.events_world import MAX_LEVELS, WorldConfigured
from memstream.producers.world import CONF_FIELD, WorldConfig, conf_key

from .base import ApplyContext, Projection, Query
from .codec import pack
from .ops import Writes, sortable
from .world_math import Posterior, entropy, shrink

NANO = 1_000_000_000
"""Counts are stored in nano-units of weight."""
SEP = "/"
"""Joins node names in index members; ids never contain it."""


def node_key(pk: keys.Projection, owner: str, scenario: str, nodes: Sequence[str]) -> str:
    """Counts of one node, named root first: field ``<variable>:<outcome>`` -> nano-units."""
    return pk.key("world", owner, scenario, *nodes)


def index_key(pk: keys.Projection, owner: str, scenario: str) -> str:
    """Sorted set of the scenario's nodes (root-first names joined by ``/``), scored by
    the time of their newest evidence."""
    return pk.key("world_nodes", owner, scenario)


class World(Projection):
    name: ClassVar[str] = "world"
    key_names: ClassVar[frozenset[str]] = frozenset({"world", "world_nodes"})
    handles: ClassVar[frozenset[str]] = frozenset({"world.configured", "evidence.observed"})

    def apply(self, event: StoredEvent, ctx: ApplyContext, writes: Writes) -> None:
        pk, owner, payload = ctx.keys, event.owner, event.event
        if isinstance(payload, WorldConfigured):
            stored = pack(WorldConfig.of(payload).stored())
            key = conf_key(pk, owner, payload.scenario)
            writes.lww(key, CONF_FIELD, sortable(event.log_id), stored)
        elif isinstance(payload, EvidenceObserved):
            writes.ops.append(observe_op(ctx, event, payload))


def observe_op(ctx: ApplyContext, event: StoredEvent, obs: EvidenceObserved) -> tuple[Any, ...]:
    """The WOBS op (layout in apply.lua): check against the configuration, then count."""
    pk, owner, scenario = ctx.keys, event.owner, obs.scenario
    nodes = list(reversed(obs.path))  # root first
    node_keys: list[str | None] = [
        node_key(pk, owner, scenario, nodes[: d + 1]) for d in range(len(nodes))
    ]
    node_keys += [None] * (MAX_LEVELS - len(node_keys))
    members = [SEP.join(nodes[: d + 1]) for d in range(len(nodes))]
    amount = round(obs.weight * NANO)  # <= 1e15 < 2**53: exact as a Lua number
    return (
        "WOBS", conf_key(pk, owner, scenario), keys.dlq(pk.p), pk.partition_key("stats"),
        index_key(pk, owner, scenario), *node_keys,
        scenario, obs.variable, obs.outcome, amount, event.ts_ms, ctx.now_ms,
        owner, event.log_id, keys.group(pk.version), *members,
    )  # fmt: skip


# --- Reads ---------------------------------------------------------------------------


def _config(scenario: str, raw: Any) -> WorldConfig | None:
    return WorldConfig.from_stored(scenario, raw) if raw else None


def _counts(raw: dict[bytes, bytes], variable: str, outcomes: Sequence[str]) -> list[float]:
    """Configured outcomes' counts (weights) at one node; any other field is ignored."""
    return [int(raw.get(f"{variable}:{o}".encode(), 0)) / NANO for o in outcomes]


@dataclass(frozen=True, slots=True)
class Chain:
    """One variable down one path: posteriors root first; the last is the asked node."""

    config: WorldConfig
    variable: str
    outcomes: tuple[str, ...]
    counts: list[list[float]]
    posteriors: list[Posterior]

    @property
    def node(self) -> Posterior:
        return self.posteriors[-1]

    def index(self, outcome: str) -> int:
        if outcome not in self.outcomes:
            raise InvalidInputError(
                "outcome", f"must be one of {', '.join(self.outcomes)}", outcome
            )
        return self.outcomes.index(outcome)

    def predict(self) -> dict[str, float]:
        return dict(zip(self.outcomes, self.node.mean, strict=True))


def require(config: WorldConfig | None, owner: str, scenario: str) -> WorldConfig:
    if config is None:
        raise InvalidInputError("scenario", f"is not configured for {owner}", scenario)
    return config


def check_path(path: Sequence[str]) -> list[str]:
    if not path:
        raise InvalidInputError("path", "must name at least one node")
    if len(path) > MAX_LEVELS:
        raise InvalidInputError("path", f"has more than {MAX_LEVELS} levels", list(path))
    return [keys.check_id(node, "path") for node in path]


def read_config(pk: keys.Projection, owner: str, scenario: str) -> Query[WorldConfig | None]:
    key = conf_key(pk, owner, scenario)
    return Query([("HGET", key, CONF_FIELD)], lambda rs: _config(scenario, rs[0]), (key,))


def read_chain(
    pk: keys.Projection, owner: str, scenario: str, path: Sequence[str], variable: str
) -> Query[Chain]:
    """Configuration and counts of every node of ``path`` (most specific first), in one
    round trip; shrinkage runs on the reply."""
    nodes = list(reversed(check_path(path)))
    node_keys = [node_key(pk, owner, scenario, nodes[: d + 1]) for d in range(len(nodes))]
    ck = conf_key(pk, owner, scenario)

    def parse(replies: list[Any]) -> Chain:
        config = require(_config(scenario, replies[0]), owner, scenario)
        config.check_path(path)
        outcomes = config.outcomes(variable)
        counts = [_counts(raw, variable, outcomes) for raw in replies[1:]]
        posteriors = shrink(counts, kappa=config.kappa, alpha0=config.alpha0)
        return Chain(config, variable, outcomes, counts, posteriors)

    commands = [("HGET", ck, CONF_FIELD), *[("HGETALL", k) for k in node_keys]]
    return Query(commands, parse, (ck, *node_keys))


def read_summary(
    pk: keys.Projection, owner: str, scenario: str, level: int
) -> Query[list[dict[str, Any]]]:
    """Every node of ``level`` (1 = most specific) with, per configured variable, its
    counts, its posterior predictive (with shrinkage) and that predictive's entropy."""
    ck, ik = conf_key(pk, owner, scenario), index_key(pk, owner, scenario)

    def first(replies: list[Any]) -> Query[list[dict[str, Any]]]:
        config = require(_config(scenario, replies[0]), owner, scenario)
        if not 1 <= level <= config.levels:
            raise InvalidInputError("level", f"must be between 1 and {config.levels}", level)
        depth = config.levels - level + 1
        members = sorted(m.decode() for m in replies[1])
        targets = [m.split(SEP) for m in members if m.count(SEP) == depth - 1]
        needed = sorted({tuple(t[: d + 1]) for t in targets for d in range(depth)})
        return Query(
            [("HGETALL", node_key(pk, owner, scenario, n)) for n in needed],
            lambda rs: _summarise(config, targets, dict(zip(needed, rs, strict=True))),
        )

    return Query([("HGET", ck, CONF_FIELD), ("ZRANGE", ik, 0, -1)], first)


def _summarise(
    config: WorldConfig, targets: list[list[str]], raw: dict[tuple[str, ...], dict[bytes, bytes]]
) -> list[dict[str, Any]]:
    out = []
    for nodes in targets:
        variables: dict[str, dict[str, Any]] = {}
        observed = False
        for variable, outcomes in config.variables.items():
            chain = [_counts(raw[tuple(nodes[: d + 1])], variable, outcomes)
                     for d in range(len(nodes))]  # fmt: skip
            mean = shrink(chain, kappa=config.kappa, alpha0=config.alpha0)[-1].mean
            variables[variable] = {
                "counts": dict(zip(outcomes, chain[-1], strict=True)),
                "predictive": dict(zip(outcomes, mean, strict=True)),
                "entropy": entropy(mean),
            }
            observed = observed or any(c > 0 for c in chain[-1])
        if observed:
            out.append({"path": list(reversed(nodes)), "variables": variables})
    return out
