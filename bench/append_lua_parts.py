"""Where the server time of one ``FCALL ms_append`` goes: stubbed variants and the inner
commands timed alone.

    .venv/bin/python bench/append_lua_parts.py [--rounds R]

One private redis-server. Part 1 loads the working tree's library under other names with
one piece stubbed out each (``bench/append_lua.py``'s patching: a patch whose target is
gone fails loudly), sends each the same 2,000 single appends of the bench's message
(pipelined, fresh eids) and reports ``usec_per_call`` of ``cmdstat_fcall``, the minimum
over rounds (a neighbour only ever adds time): an early return after the argument checks,
after all checks, and the full call without the depth check, the signature or the eid
record. Part 2 times each command ``ms_append`` runs, 5,000 times inside one ``EVAL``, so
the script's own entry cost is spread out. Bench only: the stubs do not validate.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.append import OWNER, SESSION, message, raw_fields
from bench.append_lua import LUA, ROOT, library
from bench.common import BenchRedis
from memstream.producers import Append, Producer
from memstream.workers.deploy import init

EARLY = "  if true then return {'1-1','1-1'} end\n"
CONF = "  local conf, ok\n  conf, err = read_conf(tag, p)\n"
SEEN = "  local eid_key = a.eid and (tag .. ':eid:' .. owner .. ':' .. a.eid)\n"
DEPTH = (
    "  if (a.ct == 'json' and json_too_deep(a.data)) or "
    "(a.ct == 'msgpack' and msgpack_too_deep(a.data)) then"
)
EID_SET = (
    "  if eid_key then\n    redis.call('SET', eid_key, log_id .. ' ' .. feed_id, 'EX', "
    "conf.eid_ttl)\n  end\n  return { log_id, feed_id }\n"
)
START = "local function ms_append(keys, args)\n"
VARIANTS: dict[str, list[tuple[str, str]]] = {
    "full call": [],
    "empty (FCALL entry)": [(START, START + EARLY)],
    "after argument checks": [(CONF, EARLY + CONF)],
    "after all checks": [(SEEN + "  local seen", EARLY + SEEN + "  local seen")],
    "no depth check": [(DEPTH, "  if false then")],
    "no signature": [
        ("  return redis.sha1hex(SIGNING_KEY .. redis.sha1hex(frame))\n", "  return 'x'\n")
    ],
    "no eid record": [(EID_SET, "  return { log_id, feed_id }\n")],
}

INNER = r"""
local which, n = ARGV[1], tonumber(ARGV[2])
local data = string.rep('x', 276)
for i = 1, n do
  if which == 'GET (eid, missing)' then redis.call('GET', 'ms:{1}:eid:o:' .. i)
  elseif which == 'SET EX (eid record)' then
    redis.call('SET', 'ms:{1}:eid:o:' .. i, '1700000000000-' .. i .. ' x', 'EX', 86400)
  elseif which == 'SET (last)' then redis.call('SET', 'ms:{1}:last', '1700000000000-' .. i)
  elseif which == 'HSET (heads)' then redis.call('HSET', 'ms:{1}:heads', 'o', 'x' .. i)
  elseif which == 'TIME' then redis.call('TIME')
  elseif which == 'HMGET (conf)' then
    redis.call('HMGET', 'ms:{1}:conf', 'partitions', 'max_event_bytes', 'eid_ttl')
  elseif which == 'XADD (feed pointer)' then
    redis.call('XADD', 'ms:{1}:feed', '*', 'o', 'bench-user-42', 'l', '1700000000000-1')
  elseif which == 'XADD (log entry)' then
    redis.call('XADD', 'ms:{1}:log:o', '*', 'type', 'message.appended', 'v', '2', 'ct',
      'msgpack', 'data', data, 'session', 'sess-20261121-a', 'eid', '0123456789abcdef01234567',
      'sig', '0123456789abcdef0123456789abcdef01234567')
  elseif which == 'two sha1hex (signature)' then redis.sha1hex('k' .. redis.sha1hex(data))
  end
end
return 1
"""
INNER_PARTS = ("none (the loop)", "HMGET (conf)", "GET (eid, missing)", "TIME",
               "XADD (feed pointer)", "two sha1hex (signature)", "XADD (log entry)",
               "SET (last)", "HSET (heads)", "SET EX (eid record)")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds (minimum)")
    args = parser.parse_args(argv)
    source = (ROOT / LUA).read_text()
    calls = 2000
    with BenchRedis() as server:
        client = server.client()
        init(client, partitions=16)
        names = {}
        for i, (variant, patches) in enumerate(VARIANTS.items()):
            client.function_load(library(source, f"part{i}", patches), replace=True)
            names[variant] = f"part{i}_one"
        producer = Producer.from_url(server.url)
        core = producer.core()
        items = [Append(OWNER, message(i), SESSION) for i in range(64)]
        raw = [raw_fields(message(i), i) for i in range(64)]
        per_call: dict[str, list[float]] = {v: [] for v in [*VARIANTS, "raw XADD"]}

        def usec(command: str) -> float:
            info: Any = client.info("commandstats")
            return float(info[f"cmdstat_{command}"]["usec_per_call"])

        for _ in range(args.rounds):
            for variant in VARIANTS:
                pipe = client.pipeline(transaction=False)
                for i in range(calls):
                    cmd = core.plan(items[i % 64]).command
                    pipe.execute_command(cmd[0], names[variant], *cmd[2:])  # type: ignore[no-untyped-call]
                client.config_resetstat()
                replies = pipe.execute(raise_on_error=False)
                if any(isinstance(x, Exception) for x in replies):
                    raise RuntimeError(f"{variant}: {replies[0]!r}")
                per_call[variant].append(usec("fcall"))
            pipe = client.pipeline(transaction=False)
            for i in range(calls):
                pipe.execute_command(*raw[i % 64])  # type: ignore[no-untyped-call]
            client.config_resetstat()
            pipe.execute()
            per_call["raw XADD"].append(usec("xadd"))
        print(f"redis-server {server.version}; single ms_append, us per call, min of "
              f"{args.rounds} rounds of {calls}")  # fmt: skip
        for variant, values in per_call.items():
            print(f"  {variant:24s} {min(values):7.2f}")
        n = 5000
        print(f"commands inside one EVAL, us each ({n} in a loop, loop cost included):")
        client.hset("ms:{1}:conf", mapping={"partitions": 16, "eid_ttl": 86400})
        for part in INNER_PARTS:
            client.config_resetstat()
            client.eval(INNER, 0, part, n)
            info: Any = client.info("commandstats")
            print(f"  {part:24s} {float(info['cmdstat_eval']['usec']) / n:7.2f}")
        producer.close()
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
