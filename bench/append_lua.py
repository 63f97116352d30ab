"""Server cost of ``FCALL ms_append_many`` per event: library versions and prototypes.

    .venv/bin/python bench/append_lua.py [--baseline REV] [--rounds R] [--calls K]

One private redis-server; every variant is loaded as its own library (its function
renamed) and sent the same 250-event calls of the bench's ``message.appended`` payload
(bench/append.py), which the Python producer plans. Each round runs every variant in turn
(``CONFIG RESETSTAT``, ``--calls`` calls pipelined, ``usec`` of ``cmdstat_fcall``), and
the figure is the median over rounds, next to the raw ``XADD`` of the same fields on the
same server. Variants:

* ``baseline``: ``producers/lua/append.lua`` as of ``--baseline`` (a git revision);
  its single ``ms_append`` is timed too, and so is ``current``'s;
* ``current``: the working tree's ``append.lua``;
* ``no eid record``: current without the ``SET ... EX`` of the eid record, a lower
  bound for any other way to keep it (it does not deduplicate: bench only);
* ``eid hash``: a prototype of a **wire-contract change**, not the contract: the eid
  record kept as a field of a per-owner hash per ``eid_ttl`` bucket,
  ``ms:{P}:eidb:<owner>:<bucket>`` (``HGET`` of this bucket and the one before, ``HSET``,
  one ``EXPIRE`` per hash and call), so a record lives from ``eid_ttl`` to twice that.

A variant is a textual patch of the library; the patch asserts that its target text is
there, so a change of ``append.lua`` that moves it fails loudly instead of measuring
something else.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.append import OWNER, SESSION, message, raw_fields
from bench.common import BenchRedis
from memstream.producers import Append, Producer, many
from memstream.producers.core import prepare
from memstream.workers.deploy import KEY_PLACEHOLDER, init

ROOT = Path(__file__).resolve().parent.parent
LUA = "producers/lua/append.lua"
EVENTS = 250
ONE = ("baseline", "current")
"""Variants whose single ``ms_append`` is timed too (``EVENTS`` calls, pipelined)."""

EID_SET = "redis.call('SET', eid_key, log_id .. ' ' .. feed_id, 'EX', conf.eid_ttl)"

NO_EID_RECORD = [("            " + EID_SET + "\n", "")]

EID_HASH = [
    (  # the lookup: this bucket's hash, then the previous one's
        "  local seen = redis.call('GET', eid_key)\n",
        "  local owner_eid = string.match(eid_key, '^ms:{%d+}:eid:(.*)$')\n"
        "  local owner, eid = string.match(owner_eid, '^([^:]+):(.*)$')\n"
        "  local prefix = string.match(eid_key, '^(ms:{%d+}):') .. ':eidb:' .. owner .. ':'\n"
        "  local seen = redis.call('HGET', prefix .. BUCKET, eid)\n"
        "    or redis.call('HGET', prefix .. (BUCKET - 1), eid)\n",
    ),
    (  # the bucket of this call
        "  local clock = now_ms()\n",
        "  local clock = now_ms()\n"
        "  BUCKET = math.floor(clock / 1000 / conf.eid_ttl)\n"
        "  local expire = {}\n",
    ),
    (
        "            " + EID_SET + "\n",
        "            local hkey = tag .. ':eidb:' .. owner .. ':' .. BUCKET\n"
        "            redis.call('HSET', hkey, a.eid, log_id .. ' ' .. feed_id)\n"
        "            expire[hkey] = true\n",
    ),
    (
        "  if moved then\n",
        "  for hkey in pairs(expire) do\n"
        "    redis.call('EXPIRE', hkey, 2 * conf.eid_ttl)\n"
        "  end\n"
        "  if moved then\n",
    ),
    ("local function seen_ids(eid_key)\n", "local BUCKET = 0\nlocal function seen_ids(eid_key)\n"),
]


def library(source: str, name: str, patches: Sequence[tuple[str, str]]) -> str:
    """``source`` as library ``name``, its functions renamed ``<name>_one`` and
    ``<name>_many``, patched."""
    s = source.replace("#!lua name=memstream", f"#!lua name={name}")
    s = s.replace(
        "redis.register_function('ms_append', ms_append)",
        f"redis.register_function('{name}_one', ms_append)",
    )
    s = s.replace(
        "redis.register_function('ms_append_many', ms_append_many)",
        f"redis.register_function('{name}_many', ms_append_many)",
    )
    for old, new in patches:
        if old not in s:
            raise RuntimeError(f"variant {name}: patch target not found: {old.strip()!r}")
        s = s.replace(old, new)
    return s.replace(KEY_PLACEHOLDER, "0" * 64)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--baseline", default="main", help="git revision of the baseline")
    parser.add_argument("--rounds", type=int, default=9, help="rounds (median)")
    parser.add_argument("--calls", type=int, default=4, help="250-event calls per round")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    baseline = subprocess.check_output(
        ["git", "-C", str(ROOT), "show", f"{args.baseline}:{LUA}"], text=True
    )
    current = (ROOT / LUA).read_text()
    variants = {
        "baseline": library(baseline, "v_baseline", []),
        "current": library(current, "v_current", []),
        "no_eid_record": library(current, "v_no_eid", NO_EID_RECORD),
        "eid_hash": library(current, "v_eid_hash", EID_HASH),
    }
    names = {"baseline": "v_baseline", "current": "v_current",
             "no_eid_record": "v_no_eid", "eid_hash": "v_eid_hash"}  # fmt: skip
    per_event: dict[str, list[float]] = {v: [] for v in variants}
    per_call: dict[str, list[float]] = {v: [] for v in ONE}
    raw_us: list[float] = []
    raw_cmds = [raw_fields(message(i), i) for i in range(64)]
    items = [Append(OWNER, message(i), SESSION) for i in range(EVENTS)]
    with BenchRedis() as server:
        client = server.client()
        init(client, partitions=16)
        for source in variants.values():
            client.function_load(source, replace=True)
        producer = Producer.from_url(server.url)
        core = producer.core()

        def stats(command: str) -> dict[str, Any]:
            info: Any = client.info("commandstats")
            return dict(info[f"cmdstat_{command}"])

        for r in range(args.rounds):
            order = list(variants)
            order = order[r % len(order) :] + order[: r % len(order)]
            for variant in order:
                pipe = client.pipeline(transaction=False)
                for _ in range(args.calls):  # fresh eids: every event is stored
                    prepared = [prepare(a, producer.redactor, producer.ct) for a in items]
                    for trip in many.plan_calls(core, prepared):
                        for call in trip:
                            cmd = (call.command[0], f"{names[variant]}_many", *call.command[2:])
                            pipe.execute_command(*cmd)  # type: ignore[no-untyped-call]
                client.config_resetstat()
                replies = pipe.execute()
                refused = [x for reply in replies for x in reply[1]]
                if refused:
                    raise RuntimeError(f"{variant} refused events: {refused[:4]}")
                per_event[variant].append(stats("fcall")["usec"] / (args.calls * EVENTS))
                if variant in ONE:
                    pipe = client.pipeline(transaction=False)
                    for a in items:
                        cmd = core.plan(a).command
                        pipe.execute_command(cmd[0], f"{names[variant]}_one", *cmd[2:])  # type: ignore[no-untyped-call]
                    client.config_resetstat()
                    pipe.execute()
                    per_call[variant].append(float(stats("fcall")["usec_per_call"]))
            pipe = client.pipeline(transaction=False)
            for i in range(1000):
                pipe.execute_command(*raw_cmds[i % len(raw_cmds)])  # type: ignore[no-untyped-call]
            client.config_resetstat()
            pipe.execute()
            raw_us.append(float(stats("xadd")["usec_per_call"]))
        producer.close()
        client.close()
        version = server.version
    raw = statistics.median(raw_us)
    base = statistics.median(per_event["baseline"])
    print(f"redis-server {version}; {args.rounds} rounds of {args.calls} x {EVENTS} events")
    # The minimum beside the median: on a shared machine a neighbour only ever adds time.
    low_raw, low_base = min(raw_us), min(per_event["baseline"])
    print(f"{'variant':16s} {'us/event':>9s} {'/ baseline':>11s} {'/ raw XADD':>11s}"
          f" {'min us':>8s} {'min / base':>11s}")  # fmt: skip
    print(f"{'raw XADD':16s} {raw:9.2f} {'':>11s} {1.0:11.2f} {low_raw:8.2f}")
    for variant, values in per_event.items():
        m, low = statistics.median(values), min(values)
        print(f"{variant:16s} {m:9.2f} {m / base:11.3f} {m / raw:11.2f} {low:8.2f}"
              f" {low / low_base:11.3f}")  # fmt: skip
    one, low_one = statistics.median(per_call["baseline"]), min(per_call["baseline"])
    print(f"single ms_append, us per call (pipelined {EVENTS} calls, same rounds):")
    for variant, values in per_call.items():
        m, low = statistics.median(values), min(values)
        print(f"{variant:16s} {m:9.2f} {m / one:11.3f} {m / raw:11.2f} {low:8.2f}"
              f" {low / low_one:11.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
