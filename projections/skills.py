"""Skill definitions (items, see :mod:`.items`) and their exact execution statistics.

Convergence: counts, successes and the summed duration (integer microseconds) are
commutative counters; the last run is a last-writer-wins field; the newest
:data:`RUNS_CAP` executions live in a log-ordered set capped by log id, so the p95 over
them is the same whatever the delivery order.
"""

from __future__ import annotations

from typing import Any, ClassVar

from memstream.producers import keys
from memstream.producers.entry import StoredEvent
from memstream.producers.events import SkillExecuted

from .base import ApplyContext, Query
from .codec import pack, split_versioned
from .context import ContextSection, skill_line
from .episodes import ItemProjection
from .ops import Writes, sortable

RUNS_CAP = 1000
"""The p95 duration is over the newest 1,000 executions (by log id); counts and mean
are over every execution."""
US = 1_000_000


def stats_key(pk: keys.Projection, owner: str, name: str) -> str:
    return pk.key("skill_stats", owner, name)


def runs_key(pk: keys.Projection, owner: str, name: str) -> str:
    return pk.key("skill_runs", owner, name)


class Skills(ItemProjection):
    name: ClassVar[str] = "skills"
    key_names: ClassVar[frozenset[str]] = frozenset({"skill_stats", "skill_runs"})
    stats_type: ClassVar[str] = "skills"
    context: ClassVar[ContextSection | None] = ContextSection("skills", "Skills", skill_line, 2)
    kind: ClassVar[str] = "skill"
    handles: ClassVar[frozenset[str]] = frozenset(
        {"skill.defined", "skill.executed", "memory.deleted"}
    )

    def apply(self, event: StoredEvent, ctx: ApplyContext, writes: Writes) -> None:
        run = event.event
        if not isinstance(run, SkillExecuted):
            super().apply(event, ctx, writes)
            return
        ttl = ctx.settings.skill_ttl_s
        if ctx.expired(event, ttl):
            return
        sk, rk = (
            stats_key(ctx.keys, event.owner, run.name),
            runs_key(ctx.keys, event.owner, run.name),
        )
        version, micros = sortable(event.log_id), round(run.duration_s * US)
        writes.hincr(sk, "runs", 1)
        writes.hincr(sk, "ok", int(run.success))
        writes.hincr(sk, "us", micros)
        last = {"ts": event.ts_ms, "success": run.success, "duration_s": run.duration_s}
        writes.lww(sk, "last", version, pack(last))
        writes.zlog(rk, version, pack(micros), cap=RUNS_CAP)
        if ttl is not None:
            for key in (sk, rk):
                writes.expire_at(key, event.ts_ms + ttl * 1000)


def p95(durations_us: list[int]) -> float | None:
    """Nearest-rank 95th percentile, in seconds."""
    if not durations_us:
        return None
    ordered = sorted(durations_us)
    rank = -(-95 * len(ordered) // 100)  # ceil(0.95 n) in integers: no float rounding
    return ordered[rank - 1] / US


def stats_of(stats: dict[bytes, bytes], runs: list[bytes]) -> dict[str, Any]:
    count = int(stats.get(b"runs", 0))
    ok = int(stats.get(b"ok", 0))
    total = int(stats.get(b"us", 0))
    last = split_versioned(stats[b"last"])[1] if b"last" in stats else None
    durations = [int(split_versioned(raw)[1]) for raw in runs]
    return {
        "executions": count,
        "successes": ok,
        "success_rate": ok / count if count else None,
        "mean_duration_s": total / count / US if count else None,
        "p95_duration_s": p95(durations),
        "last_run": last,
    }


def read_skill_stats(pk: keys.Projection, owner: str, name: str) -> Query[dict[str, Any]]:
    sk, rk = stats_key(pk, owner, name), runs_key(pk, owner, name)

    def parse(replies: list[Any]) -> dict[str, Any]:
        return stats_of(replies[0], replies[1])

    return Query([("HGETALL", sk), ("ZRANGE", rk, 0, -1)], parse, (sk, rk))
