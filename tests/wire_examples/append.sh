#!/usr/bin/env bash
# Append two events for owner cli-agent with nothing but redis-cli (docs/wire-protocol.md).
# tests/test_wire_protocol.py runs this script for real, so the documented example works.
set -euo pipefail

: "${REDIS_PORT:=6379}"
OWNER=cli-agent

# The partition count is fixed at `memstream init`; read it, never assume 16.
PARTITIONS=$(redis-cli -p "$REDIS_PORT" HGET ms:meta partitions)
if [ -z "$PARTITIONS" ]; then
  echo "ms:meta has no partitions: run memstream init first" >&2
  exit 1
fi

# P = int(sha1(owner)[:8], 16) % partitions. printf, not echo: no trailing newline.
SHA=$(printf '%s' "$OWNER" | sha1sum | cut -c1-8)
P=$(( 16#$SHA % PARTITIONS ))
LOG="ms:{$P}:log:$OWNER"
FEED="ms:{$P}:feed"

# -e: exit non-zero on an error reply (ERR memstream: <reason>) instead of printing it as data.
# Each call prints two lines: the log id and the feed id.
MSG_IDS=$(redis-cli -e -p "$REDIS_PORT" FCALL ms_append 2 "$LOG" "$FEED" \
  type message.appended data '{"role":"user","content":"hello from redis-cli"}' \
  ct json session s1 eid cli-1)
STATE_IDS=$(redis-cli -e -p "$REDIS_PORT" FCALL ms_append 2 "$LOG" "$FEED" \
  type state.saved data '{"state":{"mood":"curious","turns":1}}' \
  ct json eid cli-2)

# One line per append: <type> <log id> <feed id>.
echo "message.appended" $MSG_IDS
echo "state.saved" $STATE_IDS
