"""Log entry signatures, checked where entries are read outside ``ms_fetch`` (replay).

``ms_append`` signs every entry with the deployment's signing key (docs/security.md), a
secret written into the function library at load time that producers may not read. An
entry written around ``ms_append`` (a raw XADD with a producer's rights, the MULTI
fallback) therefore has no valid ``sig``. Workers see that in ``ms_fetch``; replay reads
the logs itself and asks :class:`Verifier`, so both apply the same entries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import redis

from memstream.producers import keys

Fields = Mapping[bytes, bytes]
UNSIGNED = "no valid signature: not written by ms_append"


def signature(key: bytes, owner: str, log_id: str, fields: Fields) -> str | None:
    """The ``sig`` ms_append gives an entry with these fields, or None when a field the
    signature covers is missing."""
    parts = [fields.get(name) for name in (b"type", b"v", b"ct")]
    data = fields.get(b"data")
    if any(p is None for p in parts) or data is None:
        return None
    frame = b"\0".join(
        [owner.encode(), log_id.encode(), *(p for p in parts if p is not None),
         fields.get(b"session", b""), fields.get(b"eid", b""), data]
    )  # fmt: skip
    inner = hashlib.sha1(frame, usedforsecurity=False).hexdigest().encode()
    return hashlib.sha1(key + inner, usedforsecurity=False).hexdigest()


def _id_key(log_id: str) -> tuple[int, int]:
    ms, _, seq = log_id.partition("-")
    return int(ms), int(seq or 0)


class Verifier:
    """Decides, per partition, whether replay folds an entry: as ``ms_fetch`` does."""

    def __init__(self, client: redis.Redis) -> None:
        raw: Any = client.get(keys.SIGNING_KEY)
        self.key: bytes | None = raw
        self.client = client
        self._rules: dict[int, tuple[tuple[int, int], bool]] = {}

    def _rule(self, p: int) -> tuple[tuple[int, int], bool]:
        rule = self._rules.get(p)
        if rule is None:
            raw: Any = self.client.hmget(keys.conf(p), ["own_from", "signed"])
            own_from = raw[0].decode() if raw[0] else "0-0"
            rule = self._rules[p] = (_id_key(own_from), raw[1] == b"1")
        return rule

    def reason(self, p: int, owner: str, log_id: str, fields: Fields) -> str | None:
        """Why replay must skip this entry (the partition requires signed entries and it
        has no valid signature), or None to fold it."""
        own_from, required = self._rule(p)
        if not required or _id_key(log_id) <= own_from:
            return None
        if self.key is not None and fields.get(b"sig", b"").decode("ascii", "replace") == signature(
            self.key, owner, log_id, fields
        ):
            return None
        return UNSIGNED
