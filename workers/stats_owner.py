"""``memstream stats OWNER``: keys, entries, bytes and TTL per memory type of one owner.

Keys come from one SCAN of the owner's projection keys in the active version (confirmed
with :func:`keys.key_owner`, since the glob over-matches) plus the log. Entries are exact
(ZCARD, HLEN, XLEN ... per key). Bytes are ``MEMORY USAGE`` of a sample of up to
``sample`` keys per type, scaled to the type's key count: MEMORY USAGE walks a value, so
measuring every key of a big owner would block Redis for too long. ``bytes_exact`` says
whether every key was measured.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import redis

from memstream.producers import keys
from memstream.tiering.hooks import owner_cold, stats_lines

from .replay import read_deployment

if TYPE_CHECKING:
    from memstream.projections.base import Projection


def memory_types(projections: Sequence[Projection] | None = None) -> dict[str, str]:
    """Projection key names -> memory type, as each projection declares them
    (``key_names``, ``stats_type``); a key no projection claims is reported under its name."""
    from memstream.projections.registry import default_projections, stats_types

    return stats_types(default_projections() if projections is None else projections)


_COUNT = {"zset": "ZCARD", "hash": "HLEN", "stream": "XLEN", "set": "SCARD", "list": "LLEN"}


def owner_stats(
    client: redis.Redis,
    owner: str,
    *,
    sample: int = 64,
    projections: Sequence[Projection] | None = None,
) -> dict[str, Any]:
    """Per memory type of ``owner``: ``keys``, ``entries``, ``bytes`` (MEMORY USAGE of up to
    ``sample`` keys per type, scaled), TTL range in seconds; types come from
    ``projections`` (default: the registered ones)."""
    keys.check_id(owner)
    types_of = memory_types(projections)
    d = read_deployment(client)
    p = keys.partition(owner, d.partitions)
    groups: dict[str, list[str]] = {}
    for raw in client.scan_iter(match=keys.owner_keys_pattern(p, d.version, owner), count=1000):
        key = raw.decode()
        if keys.key_owner(key, p, d.version) == owner:
            name = key[len(keys.version_prefix(p, d.version)) :].split(":", 1)[0]
            groups.setdefault(types_of.get(name, name), []).append(key)
    log = keys.log(p, owner)
    if client.exists(log):
        groups["log"] = [log]
    types = {kind: _measure(client, names, sample) for kind, names in sorted(groups.items())}
    total = {field: sum(t[field] for t in types.values()) for field in ("keys", "entries", "bytes")}
    tiers = owner_cold(client, p, owner)  # hot and cold log figures (tiering)
    tensors = _tensor_stats(client, keys.Projection(p, d.version), owner)
    return {"owner": owner, "partition": p, "version": d.version, "types": types, "total": total,
            "tiers": tiers, "tensors": tensors}  # fmt: skip


def _tensor_stats(client: redis.Redis, pk: keys.Projection, owner: str) -> dict[str, Any]:
    from memstream.projections.tensors import stats_by_kind, stats_key

    raw: Any = client.hgetall(stats_key(pk, owner))
    return stats_by_kind(raw)


def _measure(client: redis.Redis, names: Sequence[str], sample: int) -> dict[str, Any]:
    pipe = client.pipeline(transaction=False)
    for key in names:
        pipe.type(key)
        pipe.pttl(key)
    replies = pipe.execute()
    kinds = [k.decode() if isinstance(k, bytes) else str(k) for k in replies[0::2]]
    ttls = [int(t) for t in replies[1::2] if int(t) >= 0]
    for key, kind in zip(names, kinds, strict=True):
        counter = _COUNT.get(kind)
        if counter is None:
            pipe.exists(key)
        else:
            pipe.execute_command(counter, key)  # type: ignore[no-untyped-call]
    entries = sum(int(n) for n in pipe.execute())
    measured = random.sample(list(names), min(sample, len(names))) if sample > 0 else []
    for key in measured:
        pipe.memory_usage(key, samples=0)
    used = [int(b or 0) for b in pipe.execute()]
    scaled = round(sum(used) * len(names) / len(measured)) if measured else 0
    return {
        "keys": len(names),
        "entries": entries,
        "bytes": scaled,
        "bytes_exact": len(measured) == len(names),
        "ttl_s": {"min": min(ttls) / 1000, "max": max(ttls) / 1000} if ttls else None,
    }


def render(stats: dict[str, Any]) -> str:
    lines = [
        f"owner {stats['owner']} (partition {stats['partition']}, v{stats['version']})",
        f"{'type':<14}{'keys':>8}{'entries':>10}{'bytes':>12}  ttl",
    ]
    for kind, t in stats["types"].items():
        ttl = t["ttl_s"]
        shown = "none" if ttl is None else f"{ttl['min']:.0f}s..{ttl['max']:.0f}s"
        approx = "" if t["bytes_exact"] else "~"
        lines.append(
            f"{kind:<14}{t['keys']:>8}{t['entries']:>10}{approx + str(t['bytes']):>12}  {shown}"
        )
    total = stats["total"]
    lines.append(f"{'total':<14}{total['keys']:>8}{total['entries']:>10}{total['bytes']:>12}")
    lines += stats_lines(stats["tiers"]) if "tiers" in stats else []
    for kind, t in stats.get("tensors", {}).items():
        lines.append(f"tensors {kind}: {t.get('n', 0)} states, {t.get('raw', 0)} raw bytes -> "
                     f"{t.get('stored', 0)} stored ({t['ratio']:.2f}x)")  # fmt: skip
    return "\n".join(lines)
