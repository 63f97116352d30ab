"""``memstream health``: one yes/no for a monitor, with the reason, and its exit codes.

The checks run in order and the first failure decides the exit code:

===  ==================  ==============================================================
0    OK                  every check passed
3    UNREACHABLE         Redis did not answer (refused, timed out, LOADING)
4    NOT_INITIALISED     no ``ms:meta``, or the functions are missing or differ from
                         this memstream version (run ``memstream init``)
5    GROUPS_MISSING      a partition lacks the active version's consumer group
6    NO_CONSUMER         no live worker heartbeat
7    LAGGING             entries not yet applied (undelivered + pending) over ``max_lag``
8    DLQ_NOT_EMPTY       dead letters wait (``memstream status`` only; ``health`` reports
                         the count without failing)
===  ==================  ==============================================================

1 and 2 stay the command line's own: an error, or bad usage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import redis

from memstream.producers import keys
from memstream.producers.deployment import Deployment
from memstream.producers.errors import NotInitialisedError

from . import heartbeat
from .deploy import KEY_PLACEHOLDER, lua_sources

OK, UNREACHABLE, NOT_INITIALISED, GROUPS_MISSING, NO_CONSUMER, LAGGING, DLQ_NOT_EMPTY = (
    0, 3, 4, 5, 6, 7, 8,
)  # fmt: skip
DEFAULT_MAX_LAG = 10_000

_LIB_NAME = re.compile(r"#!lua name=(\S+)")


@dataclass
class Health:
    code: int = OK
    reason: str = "healthy"
    details: dict[str, Any] = field(default_factory=dict)

    def fail(self, code: int, reason: str) -> Health:
        if self.code == OK:
            self.code, self.reason = code, reason
        return self

    def as_dict(self) -> dict[str, Any]:
        return {"healthy": self.code == OK, "code": self.code, "reason": self.reason,
                **self.details}  # fmt: skip


def _functions_match(client: redis.Redis) -> str | None:
    """None when every shipped library is loaded with this version's code, else why not.
    The signing key written into the code at load is matched as a wildcard."""
    loaded: Any = client.function_list(withcode=True)
    code = {}
    for lib in loaded:
        # RESP2 replies are flat [name, value, ...] lists, RESP3 ones are maps.
        pairs = lib.items() if isinstance(lib, dict) else zip(lib[::2], lib[1::2], strict=True)
        row = {k.decode() if isinstance(k, bytes) else k: v for k, v in pairs}
        name, text = row.get("library_name", b""), row.get("library_code", b"")
        code[name.decode() if isinstance(name, bytes) else name] = (
            text.decode() if isinstance(text, bytes) else text
        )
    for source in lua_sources():
        m = _LIB_NAME.match(source)
        if m is None:
            continue
        name = m.group(1)
        if name not in code:
            return f"function library {name} is not loaded: run `memstream init`"
        pattern = re.escape(source).replace(re.escape(KEY_PLACEHOLDER), ".*?")
        if re.fullmatch(pattern, code[name], re.S) is None:
            return (
                f"function library {name} differs from this memstream version: run `memstream init`"
            )
    return None


def check(client: redis.Redis, max_lag: int = DEFAULT_MAX_LAG) -> Health:
    """Run every check against ``client``; ``max_lag`` is the most entries of the active
    version that may wait (undelivered plus pending, all partitions together)."""
    health = Health()
    try:
        client.ping()
    except redis.RedisError as e:
        return health.fail(UNREACHABLE, f"Redis did not answer: {e}")
    try:
        deployment = Deployment.from_meta(client.hgetall(keys.META))  # type: ignore[arg-type]
    except NotInitialisedError as e:
        return health.fail(NOT_INITIALISED, str(e))
    health.details["deployment"] = {"partitions": deployment.partitions,
                                    "version": deployment.version}  # fmt: skip
    mismatch = _functions_match(client)
    if mismatch:
        health.fail(NOT_INITIALISED, mismatch)
    group = keys.group(deployment.version).encode()
    pipe = client.pipeline(transaction=False)
    for p in range(deployment.partitions):
        pipe.xinfo_groups(keys.feed(p))
        pipe.xlen(keys.dlq(p))
    replies = pipe.execute(raise_on_error=False)
    missing: list[int] = []
    lag = dlq = 0
    for p in range(deployment.partitions):
        groups, dlq_len = replies[2 * p], replies[2 * p + 1]
        dlq += int(dlq_len) if not isinstance(dlq_len, Exception) else 0
        found = [] if isinstance(groups, Exception) else [g for g in groups if g["name"] == group]
        if not found:
            missing.append(p)
            continue
        g = found[0]
        # lag is nil once an entry past the group's position was deleted: count the
        # whole feed then, an upper bound that errs on the side of "lagging".
        waiting = g.get("lag")
        lag += int(g["pending"]) + (
            int(waiting) if waiting is not None else int(client.xlen(keys.feed(p)))
        )
    live = heartbeat.live(client)
    health.details |= {"lag": lag, "max_lag": max_lag, "dlq": dlq,
                       "consumers": [w["consumer"] for w in live],
                       "missing_groups": missing}  # fmt: skip
    if missing:
        health.fail(
            GROUPS_MISSING,
            f"group {group.decode()} is missing on {len(missing)} partition(s): {missing[:5]}",
        )
    if not live:
        health.fail(NO_CONSUMER, "no live worker: no heartbeat renewed within "
                    f"{heartbeat.TTL_S:.0f}s (start `memstream worker`)")  # fmt: skip
    if lag > max_lag:
        health.fail(LAGGING, f"{lag} entries wait to be applied (more than --max-lag {max_lag})")
    return health
