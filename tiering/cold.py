"""Cold projection entries: a projection value kept in the archive, with only a pointer
in Redis.

A pointer is the value's LWW field with the same version prefix and the msgpack map
``{"$cold": [object name, offset, length, sha256]}`` as its body. Keeping the prefix
keeps last-writer-wins intact: a newer write replaces the pointer as it would the value;
an older one loses to it. Readers resolve pointers transparently
(:func:`resolve`); a piece that fails its sha256 raises :class:`CorruptSegmentError`
naming the object.

The one user so far: episodes whose event is older than the policy's age
(:func:`cold_items`). Values of one owner and kind are packed into one object per pass
(``names.cold_value``), each piece its own msgpack body at its offset.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
from collections import OrderedDict
from typing import Any

import msgpack
import redis

from memstream.producers import keys
from memstream.projections.codec import pack
from memstream.projections.items import item_key, recent_key
from memstream.projections.ops import VERSION_LEN

from . import names
from .archive import Archive
from .errors import CorruptSegmentError

COLD = "$cold"
FIELD = "doc"
MAX_PIECES = 1000
"""Values per object (and per ``ms_cold_swap`` call) at most."""


def _is_pointer(body: Any) -> bool:
    return isinstance(body, dict) and COLD in body and len(body) == 1


def cold_items(
    client: redis.Redis, archive: Archive, pk: keys.Projection, owner: str, *,
    kind: str, older_than_ms: int,
) -> int:  # fmt: skip
    """Move ``owner``'s ``kind`` items whose event is older than ``older_than_ms`` to the
    archive; return how many were swapped for pointers."""
    ids: Any = client.zrange(recent_key(pk, owner, kind), 0, -1)
    if not ids:
        return 0
    # The listing sets hold a '' sentinel member; it names no item.
    item_keys = [item_key(pk, owner, kind, i.decode()) for i in ids if i]
    pipe = client.pipeline(transaction=False)
    for key in item_keys:
        pipe.hget(key, FIELD)
    chosen: list[tuple[str, bytes, bytes]] = []
    for key, raw in zip(item_keys, pipe.execute(), strict=True):
        if raw is None or len(raw) <= VERSION_LEN:
            continue
        version, payload = raw[:VERSION_LEN], raw[VERSION_LEN:]
        body = msgpack.unpackb(payload, raw=False)
        if body is None or _is_pointer(body) or int(version[:13]) >= older_than_ms:
            continue
        chosen.append((key, raw, payload))
    swapped = 0
    for start in range(0, len(chosen), MAX_PIECES):
        part = chosen[start : start + MAX_PIECES]
        swapped += _pack_and_swap(client, archive, pk, owner=owner, kind=kind, chosen=part)
    return swapped


def _pack_and_swap(
    client: redis.Redis, archive: Archive, pk: keys.Projection, *, owner: str, kind: str,
    chosen: list[tuple[str, bytes, bytes]],
) -> int:  # fmt: skip
    versions = sorted(raw[:VERSION_LEN].decode() for _, raw, _ in chosen)
    name = names.cold_value(pk.p, owner, pk.version, kind, first=versions[0], last=versions[-1])
    blob = b"".join(payload for _, _, payload in chosen)
    archive.put(name, blob)
    if hashlib.sha256(archive.get(name)).digest() != hashlib.sha256(blob).digest():
        raise CorruptSegmentError(f"cold object {name} read back differs from what was put", name)
    args: list[Any] = [FIELD]
    offset = 0
    for _key, raw, payload in chosen:
        ref = [name, offset, len(payload), hashlib.sha256(payload).hexdigest()]
        args += [raw, raw[:VERSION_LEN] + pack({COLD: ref})]
        offset += len(payload)
    command = ("FCALL", "ms_cold_swap", len(chosen), *[k for k, _, _ in chosen], *args)
    return int(client.execute_command(*command))  # type: ignore[no-untyped-call]


_REF_NAME = re.compile(r"p\d+/[^/]+/cold/v\d+/[^/]+/[\d-]+_[\d-]+\.bin")


def _is_ref(ref: Any) -> bool:
    """Only the exact shape :func:`cold_items` writes counts as a pointer: a user's own
    document that happens to hold a ``$cold`` key is returned as it is."""
    return (
        isinstance(ref, list) and len(ref) == 4 and isinstance(ref[0], str)
        and _REF_NAME.fullmatch(ref[0]) is not None and isinstance(ref[1], int)
        and isinstance(ref[2], int) and isinstance(ref[3], str) and len(ref[3]) == 64
    )  # fmt: skip


def _refs(value: Any, found: list[dict[str, Any]], depth: int = 0) -> None:
    if depth > 4:
        return
    if isinstance(value, dict):
        # A parsed item is {"log_id", "$cold"} and nothing else.
        if _is_ref(value.get(COLD)) and set(value) <= {COLD, "log_id"}:
            found.append(value)
            return
        for v in value.values():
            if isinstance(v, dict | list):
                _refs(v, found, depth + 1)
    elif isinstance(value, list):
        for v in value:
            if isinstance(v, dict | list):
                _refs(v, found, depth + 1)


_VALUES: OrderedDict[tuple[str, str], bytes] = OrderedDict()
_VALUES_MAX = 4096
_VALUES_LOCK = threading.Lock()


def fetch(archive: Archive | None, ref: list[Any]) -> dict[str, Any]:
    """The value a pointer names, checked against its sha256 (the checked bytes of the
    newest :data:`_VALUES_MAX` values are kept in process: archived values never change)."""
    name, offset, length, digest = ref
    with _VALUES_LOCK:
        known = _VALUES.get((name, digest))
        if known is not None:
            _VALUES.move_to_end((name, digest))
    if known is not None:
        cached: dict[str, Any] = msgpack.unpackb(known, raw=False)
        return cached
    if archive is None:
        from .errors import ArchiveConfigError

        raise ArchiveConfigError(
            f"a value is archived in {name} but archive_url is not set: set "
            "MEMSTREAM_ARCHIVE_URL to read it"
        )
    data = archive.get(name, int(offset), int(length))
    if len(data) != int(length) or hashlib.sha256(data).hexdigest() != digest:
        raise CorruptSegmentError(
            f"cold value at {name} offset {offset} fails its sha256 check", name
        )
    with _VALUES_LOCK:
        _VALUES[(name, digest)] = data
        while len(_VALUES) > _VALUES_MAX:
            _VALUES.popitem(last=False)
    body: dict[str, Any] = msgpack.unpackb(data, raw=False)
    return body


async def resolve(value: Any, archive: Archive | None) -> Any:
    """Replace, in place, every pointer in a read's result by the value it names.

    Results are item dicts (``{"log_id", "$cold"}`` after the reader's parse) in lists
    or pages; anything without a pointer is returned untouched, with one quick walk."""
    found: list[dict[str, Any]] = []
    _refs(value, found)
    for holder in found:
        body = await asyncio.to_thread(fetch, archive, holder.pop(COLD))
        holder.update(body)
    return value


def resolve_blocking(value: Any, archive: Archive | None) -> Any:
    """:func:`resolve` for the blocking reader: the same replacement, in the caller's
    thread."""
    found: list[dict[str, Any]] = []
    _refs(value, found)
    for holder in found:
        holder.update(fetch(archive, holder.pop(COLD)))
    return value
