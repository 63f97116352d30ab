"""``memstream status``: what a deployment is doing, gathered into one plain dict.

:func:`gather` only reads (pipelined: a few round trips whatever the partition count)
and returns JSON-ready data; :func:`render` turns that dict into tables for a terminal.
Keeping them apart lets ``--json``, the demo and tests share one source of numbers.

``memstream status`` exits (:func:`exit_code`):

===  ==============  ====================================================================
0    OK              a live worker heartbeat exists and the DLQ is empty
1    error           Redis unreachable, not initialised, or another error (one line why)
6    NO_CONSUMER     no live worker heartbeat (``memstream worker`` is not running)
8    DLQ_NOT_EMPTY   dead letters wait (``memstream dlq list``)
===  ==============  ====================================================================

Workers are listed from their heartbeats (:mod:`.heartbeat`), not only from the groups'
consumer lists: Redis names a consumer in a group only once it was handed an entry, so
right after a replay flip a busy worker would otherwise look absent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import redis
from rich import box
from rich.console import Console
from rich.table import Table

from memstream.producers import keys
from memstream.producers.connection import is_cluster
from memstream.producers.deployment import Deployment
from memstream.tiering.hooks import deployment_cold, status_lines

from . import heartbeat
from .deploy import read_deployment
from .health import DLQ_NOT_EMPTY, NO_CONSUMER, OK

LAG_SCAN_LIMIT = 100_000
"""Redis reports a group's lag as nil once an entry past the group's position has been
deleted; we then count with XRANGE. Past this many entries the count stops and is
marked inexact, so status never walks a huge backlog entry by entry."""

LAG_PAGE = 1000

Status = dict[str, Any]


def _text(raw: object) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _role(version: int | None, deployment: Deployment) -> str:
    if version == deployment.version:
        return "active"
    if version is not None and version == deployment.next_version:
        return "next"
    return "other"


def count_after(client: redis.Redis, feed: str, after: str) -> tuple[int, bool]:
    """Entries in ``feed`` strictly after ``after``: (count, exact)."""
    count, start = 0, f"({after}"
    while count < LAG_SCAN_LIMIT:
        page: Any = client.xrange(feed, min=start, max="+", count=LAG_PAGE)
        count += len(page)
        if len(page) < LAG_PAGE:
            return count, True
        start = f"({_text(page[-1][0])}"
    return count, False


def gather(client: redis.Redis) -> Status:
    """Read the deployment, every feed's groups and consumers, the DLQs and counters."""
    deployment = read_deployment(client)
    parts = range(deployment.partitions)
    pipe = client.pipeline(transaction=False)
    for p in parts:
        pipe.xlen(keys.feed(p))
        pipe.xinfo_groups(keys.feed(p))
        pipe.xlen(keys.dlq(p))
    # a Cluster pipeline carries keyed commands only; INFO then goes to one node
    node_wide = is_cluster(client)
    if not node_wide:
        pipe.info("server")
        pipe.info("memory")
    replies = pipe.execute(raise_on_error=False)
    if node_wide:
        server, memory = client.info("server"), client.info("memory")
    else:
        server, memory = replies[-2], replies[-1]

    partitions: list[dict[str, Any]] = []
    for p in parts:
        feed_len, groups, dlq_len = replies[3 * p : 3 * p + 3]
        # A feed that was never created answers XINFO with an error: it has no groups.
        found = [] if isinstance(groups, Exception) else groups
        partitions.append(
            {
                "partition": p,
                "feed_length": int(feed_len),
                "dlq_length": int(dlq_len),
                "groups": [_group(g, deployment) for g in found],
            }
        )
    _add_details(client, partitions)
    expected = [deployment.version]
    if deployment.next_version is not None:
        expected.append(deployment.next_version)
    for part in partitions:
        names = {g["group"] for g in part["groups"]}
        part["missing_groups"] = [keys.group(v) for v in expected if keys.group(v) not in names]
    return {
        "redis": {
            "version": _text(server.get("redis_version", "?")),
            "used_memory_human": _text(memory.get("used_memory_human", "?")),
        },
        "deployment": {
            "partitions": deployment.partitions,
            "version": deployment.version,
            "next_version": deployment.next_version,
            "format": deployment.format,
            "max_event_bytes": deployment.max_event_bytes,
        },
        "partitions": partitions,
        "consumers": _consumers(partitions),
        "totals": _totals(partitions),
        "tiers": deployment_cold(client, deployment.partitions),  # hot and cold (tiering)
        "workers": heartbeat.live(client),
        "tensor_problems": _tensor_problems(client),
    }


def exit_code(status: Mapping[str, Any]) -> int:
    """The exit code of ``memstream status`` for ``status`` (see the module docstring)."""
    if not status.get("workers"):
        return NO_CONSUMER
    if status["totals"]["dlq_length"]:
        return DLQ_NOT_EMPTY
    return OK


def _tensor_problems(client: redis.Redis) -> dict[str, str]:
    """Tensor model version -> why it cannot be used (written by the tensor registry)."""
    raw: Any = client.hgetall(keys.TENSOR_PROBLEMS)
    return {_text(k): _text(v) for k, v in sorted(raw.items())}


def _group(raw: Mapping[str, Any], deployment: Deployment) -> dict[str, Any]:
    name = _text(raw["name"])
    version = keys.group_version(name)
    lag = raw.get("lag")
    return {
        "group": name,
        "version": version,
        "role": _role(version, deployment),
        "last_delivered_id": _text(raw["last-delivered-id"]),
        "lag": None if lag is None else int(lag),
        "lag_exact": lag is not None,
        "pending": int(raw["pending"]),
        "consumers": [],
        "unknown": 0,
        "dlq": 0,
    }


def _add_details(client: redis.Redis, partitions: list[dict[str, Any]]) -> None:
    """Consumers and counters per group, then any lag Redis could not give."""
    pipe = client.pipeline(transaction=False)
    slots: list[tuple[dict[str, Any], bool]] = []
    for part in partitions:
        for g in part["groups"]:
            pipe.xinfo_consumers(keys.feed(part["partition"]), g["group"])
            if g["version"] is not None:
                stats = keys.Projection(part["partition"], g["version"]).partition_key("stats")
                pipe.hmget(stats, ["unknown", "dlq"])
            slots.append((g, g["version"] is not None))
    replies = iter(pipe.execute(raise_on_error=False) if slots else [])
    for g, has_stats in slots:
        consumers = next(replies)
        if not isinstance(consumers, Exception):
            g["consumers"] = [
                {"name": _text(c["name"]), "pending": int(c["pending"]), "idle_ms": int(c["idle"])}
                for c in consumers
            ]
        counters = next(replies) if has_stats else None
        if isinstance(counters, list):
            g["unknown"], g["dlq"] = (int(v) if v is not None else 0 for v in counters)
    for part in partitions:
        for g in part["groups"]:
            if g["lag"] is None:
                feed = keys.feed(part["partition"])
                g["lag"], g["lag_exact"] = count_after(client, feed, g["last_delivered_id"])


def _consumers(partitions: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each (group, consumer) across partitions: pending summed, idle = most recent."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for part in partitions:
        for g in part["groups"]:
            for c in g["consumers"]:
                row = merged.setdefault(
                    (g["group"], c["name"]),
                    {"group": g["group"], "name": c["name"], "partitions": 0, "pending": 0,
                     "idle_ms": c["idle_ms"]},
                )  # fmt: skip
                row["partitions"] += 1
                row["pending"] += c["pending"]
                row["idle_ms"] = min(row["idle_ms"], c["idle_ms"])
    return [merged[k] for k in sorted(merged)]


def _totals(partitions: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    totals: dict[str, Any] = {"feed_length": 0, "dlq_length": 0, "groups": {}}
    for part in partitions:
        totals["feed_length"] += part["feed_length"]
        totals["dlq_length"] += part["dlq_length"]
        for g in part["groups"]:
            row = totals["groups"].setdefault(
                g["group"],
                {"lag": 0, "lag_exact": True, "pending": 0, "unknown": 0, "dlq": 0,
                 "consumers": 0, "partitions": 0},
            )  # fmt: skip
            for field in ("lag", "pending", "unknown", "dlq"):
                row[field] += g[field]
            row["lag_exact"] = row["lag_exact"] and g["lag_exact"]
            row["consumers"] = max(row["consumers"], len(g["consumers"]))
            row["partitions"] += 1
    return totals


# Rendering -----------------------------------------------------------------------------


def _busy(part: Mapping[str, Any]) -> bool:
    if part["feed_length"] or part["dlq_length"]:
        return True
    return any(g["lag"] or g["pending"] or g["unknown"] or g["dlq"] for g in part["groups"])


def _lag(value: int, exact: bool) -> str:
    return f"{value}" if exact else f">={value}"


def human_ms(ms: int) -> str:
    if ms < 1000:
        return f"{ms}ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f}s"
    if ms < 3_600_000:
        return f"{ms // 60_000}m{ms % 60_000 // 1000:02d}s"
    return f"{ms // 3_600_000}h{ms % 3_600_000 // 60_000:02d}m"


def render(status: Mapping[str, Any], console: Console) -> None:
    """Print the status for people: fits an 80-column terminal; quiet parts are folded."""
    d, r = status["deployment"], status["redis"]
    console.print(
        f"[bold]memstream[/]  Redis {r['version']}  used memory {r['used_memory_human']}",
        highlight=False,
    )
    console.print(
        f"partitions {d['partitions']}  active version v{d['version']}  format {d['format']}"
        f"  max event {d['max_event_bytes']} bytes",
        highlight=False,
    )
    if d["next_version"] is not None:
        console.print(f"[yellow]replay in progress: building v{d['next_version']}[/]")
    console.print(_partition_table(status))
    for group, parts in _missing(status["partitions"]).items():
        console.print(f"[red]group {group} is missing on partition(s) {parts}[/]")
    if status["consumers"]:
        console.print(_consumer_table(status["consumers"]))
    workers = status.get("workers", [])
    if workers:
        console.print(_worker_table(workers))
    else:
        console.print("[yellow]no live worker: start one with `memstream worker`[/]")
    for version, reason in status.get("tensor_problems", {}).items():
        console.print(f"[red]tensor model {version}: {reason}[/]", highlight=False)
    for line in status_lines(status["tiers"]) if "tiers" in status else ():
        console.print(line, highlight=False)
    dlq = status["totals"]["dlq_length"]
    if dlq:
        noun = "entry" if dlq == 1 else "entries"
        console.print(f"[red]{dlq} {noun} in the DLQ[/]: see `memstream dlq list`")


def _missing(partitions: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Group -> the partitions lacking it, as compact ranges ("0-9, 11")."""
    lacking: dict[str, list[int]] = {}
    for part in partitions:
        for group in part["missing_groups"]:
            lacking.setdefault(group, []).append(part["partition"])
    return {group: _ranges(ps) for group, ps in lacking.items()}


def _ranges(numbers: list[int]) -> str:
    spans: list[list[int]] = []
    for n in sorted(numbers):
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def _partition_table(status: Mapping[str, Any]) -> Table:
    parts = status["partitions"]
    shown = [p for p in parts if _busy(p)]
    hidden = len(parts) - len(shown)
    title = "Partitions" if not hidden else f"Partitions ({len(shown)} of {len(parts)} busy)"
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("P", "group", "feed", "lag", "pending", "consumers", "DLQ", "dead", "unknown"):
        table.add_column(name, justify="left" if name == "group" else "right")
    for part in shown:
        first = True
        for g in part["groups"]:
            feed = str(part["feed_length"]) if first else ""
            dlq = str(part["dlq_length"]) if first else ""
            name = g["group"] + ("" if g["role"] == "active" else f" ({g['role']})")
            table.add_row(
                str(part["partition"]) if first else "", name, feed,
                _lag(g["lag"], g["lag_exact"]), str(g["pending"]), str(len(g["consumers"])),
                dlq, str(g["dlq"]), str(g["unknown"]),
            )  # fmt: skip
            first = False
    totals = status["totals"]
    if table.rows:
        table.rows[-1].end_section = True
    for i, (name, g) in enumerate(sorted(totals["groups"].items())):
        table.add_row(
            "all" if i == 0 else "", name,
            str(totals["feed_length"]) if i == 0 else "", _lag(g["lag"], g["lag_exact"]),
            str(g["pending"]), str(g["consumers"]),
            str(totals["dlq_length"]) if i == 0 else "", str(g["dlq"]), str(g["unknown"]),
            style="bold",
        )  # fmt: skip
    return table


def _consumer_table(consumers: Iterable[Mapping[str, Any]]) -> Table:
    # Redis lists a consumer in a partition once it has been handed an entry there.
    table = Table(title="Consumers", box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("group", "consumer", "partitions", "pending", "idle"):
        table.add_column(name, justify="right" if name in ("partitions", "pending") else "left")
    for c in consumers:
        table.add_row(
            c["group"], c["name"], str(c["partitions"]), str(c["pending"]), human_ms(c["idle_ms"])
        )
    return table


def _worker_table(workers: Iterable[Mapping[str, Any]]) -> Table:
    table = Table(title="Live workers (heartbeats)", box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("consumer", "role", "versions", "partitions", "applied", "beat"):
        table.add_column(name, justify="right" if name in ("partitions", "applied") else "left")
    for w in workers:
        versions = ",".join(f"v{v}" for v in w.get("versions", []))
        table.add_row(
            str(w.get("consumer", "?")), str(w.get("role", "?")), versions,
            str(w.get("partitions", "?")), str(w.get("applied", "?")),
            human_ms(int(w.get("age_ms", 0))) + " ago",
        )  # fmt: skip
    return table
