#!/usr/bin/env bash
# Append three events for owner cli-agent in one call with redis-cli (docs/wire-protocol.md);
# the third is refused (bad type) and the other two are stored.
# tests/test_wire_protocol.py runs this script for real, so the documented example works.
set -euo pipefail

: "${REDIS_PORT:=6379}"
OWNER=cli-agent
PARTITIONS=$(redis-cli -p "$REDIS_PORT" HGET ms:meta partitions)
SHA=$(printf '%s' "$OWNER" | sha1sum | cut -c1-8)
P=$(( 16#$SHA % PARTITIONS ))

# Keys: the feed, then the log of every owner named. Each event: the position of its log
# key among the keys (2 here), the number of name/value arguments that follow, then them.
# Output, one value a line: log id, feed id per stored event, an empty line per refused
# one, then the refused events' 0-based index and reason.
redis-cli -e -p "$REDIS_PORT" FCALL ms_append_many 2 "ms:{$P}:feed" "ms:{$P}:log:$OWNER" \
  2 8 type message.appended data '{"role":"user","content":"one"}' ct json session s1 \
  2 8 type message.appended data '{"role":"assistant","content":"two"}' ct json session s1 \
  2 4 type Not-A-Type data '{}'
