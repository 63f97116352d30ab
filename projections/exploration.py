"""Exploration patterns per trigger (``exploration.recorded``).

Convergence: per trigger and pattern, tries, successes, the reward sum (nano-units, the
reward was rounded to them at validation) and how often each context tag came with the
pattern are HINCRBY counters, and the last use a ZMAX over event times. All commute, so
any order of delivery gives the same state, and the mean reward is exact.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, ClassVar

from memstream.producers import keys
from memstream.producers.entry import StoredEvent
from memstream.producers.events_world import ExplorationRecorded

from .base import ApplyContext, Projection, Query
from .ops import Writes

NANO = 1_000_000_000


def stats_key(pk: keys.Projection, owner: str, trigger: str) -> str:
    """Fields ``n:<pattern>`` tries, ``s:`` successes, ``r:`` reward sum in nano-units,
    ``t:<pattern>:<tag>`` tries that carried the tag."""
    return pk.key("explore", owner, trigger)


def last_key(pk: keys.Projection, owner: str, trigger: str) -> str:
    """Sorted set pattern -> time of its newest try (ms)."""
    return pk.key("explore_last", owner, trigger)


class Exploration(Projection):
    name: ClassVar[str] = "exploration"
    key_names: ClassVar[frozenset[str]] = frozenset({"explore", "explore_last"})
    handles: ClassVar[frozenset[str]] = frozenset({"exploration.recorded"})

    def apply(self, event: StoredEvent, ctx: ApplyContext, writes: Writes) -> None:
        rec = event.event
        if not isinstance(rec, ExplorationRecorded):
            return
        key = stats_key(ctx.keys, event.owner, rec.trigger)
        pattern = rec.pattern
        writes.hincr(key, f"n:{pattern}", 1)
        writes.hincr(key, f"s:{pattern}", 1 if rec.success else 0)
        writes.hincr(key, f"r:{pattern}", round(rec.reward * NANO))
        for tag in sorted(set(rec.context_tags)):
            writes.hincr(key, f"t:{pattern}:{tag}", 1)
        writes.zmax(last_key(ctx.keys, event.owner, rec.trigger), pattern, event.ts_ms)


def jaccard(a: set[str], b: set[str]) -> float:
    """|a & b| / |a | b|; 1 when both are empty (no context to tell patterns apart)."""
    union = a | b
    return len(a & b) / len(union) if union else 1.0


def _patterns(raw: dict[bytes, bytes], last: list[Any]) -> dict[str, dict[str, Any]]:
    used = {m.decode(): int(float(s)) for m, s in zip(last[0::2], last[1::2], strict=True)}
    found: dict[str, dict[str, Any]] = {}
    for name, value in raw.items():
        kind, _, rest = name.decode().partition(":")
        pattern, _, tag = rest.partition(":")
        entry = found.setdefault(pattern, {"tags": {}, "n": 0, "s": 0, "r": 0})
        if kind == "t":
            entry["tags"][tag] = int(value)
        else:
            entry[kind] = int(value)
    out = {}
    for pattern, e in found.items():
        tries = e["n"]
        if tries <= 0:
            continue
        out[pattern] = {
            "pattern": pattern,
            "tries": tries,
            "successes": e["s"],
            "success_rate": e["s"] / tries,
            "mean_reward": e["r"] / NANO / tries,
            "tags": e["tags"],
            "last_used_ms": used.get(pattern),
        }
    return out


def read_exploration(
    pk: keys.Projection,
    owner: str,
    trigger: str,
    context_tags: Sequence[str],
    *,
    limit: int,
    seed: int | None,
) -> Query[list[dict[str, Any]]]:
    """Patterns ranked by Jaccard(context, pattern tags) x a Beta(1+s, 1+f) estimate: its
    mean, or with ``seed`` a Thompson draw (a ``random.Random(seed)``, patterns in name
    order, so the same seed and state give the same ranking). Patterns that share no tag
    with a non-empty context are left out."""
    sk, lk = stats_key(pk, owner, trigger), last_key(pk, owner, trigger)
    context = set(context_tags)

    def parse(replies: list[Any]) -> list[dict[str, Any]]:
        patterns = _patterns(replies[0], replies[1])
        rng = random.Random(seed) if seed is not None else None
        ranked = []
        for name in sorted(patterns):
            p = patterns[name]
            # No context: nothing to match, every pattern competes on its success alone.
            overlap = jaccard(context, set(p["tags"])) if context else 1.0
            if overlap == 0.0:
                continue
            s, f = p["successes"], p["tries"] - p["successes"]
            estimate = rng.betavariate(1 + s, 1 + f) if rng else (1 + s) / (2 + s + f)
            ranked.append({**p, "overlap": overlap, "estimate": estimate,
                           "score": overlap * estimate})  # fmt: skip
        ranked.sort(key=lambda p: (-p["score"], -(p["last_used_ms"] or 0), p["pattern"]))
        return ranked[:limit]

    commands = [("HGETALL", sk), ("ZRANGE", lk, 0, -1, "WITHSCORES")]
    return Query(commands, parse, (sk, lk))
