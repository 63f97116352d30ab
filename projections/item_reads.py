"""Reads of items: get by id, pages newest first or by importance, live counts.

A page is one ZRANGE on a listing set, then one pipelined HGET per id; ids whose item
has expired but are not pruned yet are skipped (their key is gone, or their expiry
score is past). Cursors are opaque offsets: a page computed later may shift by the
items saved or deleted meanwhile.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Literal

import msgpack

from memstream.producers import keys
from memstream.producers.errors import InvalidInputError

from .base import Query
from .codec import split_versioned
from .items import RECENT_SCALE, important_key, item_key, recent_key

Order = Literal["recent", "importance"]


def _body(raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    log_id, body = split_versioned(raw)
    return None if body is None else {"log_id": log_id, **body}


def read_item(pk: keys.Projection, owner: str, kind: str, item_id: str) -> Query[Any]:
    key = item_key(pk, owner, kind, keys.check_id(item_id, "id"))
    return Query([("HGET", key, "doc")], lambda r: _body(r[0]), (key,))


def read_count(pk: keys.Projection, owner: str, kind: str, now_ms: int) -> Query[int]:
    key = recent_key(pk, owner, kind)
    live_min = (now_ms + 1) * RECENT_SCALE
    return Query([("ZCOUNT", key, live_min, "+inf")], lambda r: int(r[0]))


def encode_cursor(kind: str, order: str, offset: int) -> str:
    raw = msgpack.packb(["list", kind, order, offset])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, kind: str, order: str) -> int:
    if cursor is None:
        return 0
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        tag, got_kind, got_order, offset = msgpack.unpackb(raw)
    except (ValueError, TypeError, binascii.Error, msgpack.ExtraData) as e:
        raise InvalidInputError("cursor", "is not a cursor returned by this listing", cursor) from e
    if (tag, got_kind, got_order) != ("list", kind, order) or not isinstance(offset, int):
        raise InvalidInputError("cursor", f"is not a cursor of {kind} by {order}", cursor)
    return max(0, offset)


def read_page(
    pk: keys.Projection, owner: str, kind: str, *, order: Order, limit: int,
    cursor: str | None, now_ms: int,
) -> Query[dict[str, Any]]:  # fmt: skip
    """``{"items": [...], "cursor": next or None}``, newest first or most important first."""
    if order not in ("recent", "importance"):
        raise InvalidInputError("order", "must be 'recent' or 'importance'", order)
    offset = decode_cursor(cursor, kind, order)
    if order == "recent":
        key = recent_key(pk, owner, kind)
        live_min = (now_ms + 1) * RECENT_SCALE
        command: tuple[Any, ...] = ("ZRANGE", key, "+inf", live_min, "BYSCORE", "REV",
                                    "LIMIT", offset, limit + 1)  # fmt: skip
    else:  # the sentinel '' sits at -1, below every importance
        key = important_key(pk, owner, kind)
        command = ("ZRANGE", key, "+inf", 0, "BYSCORE", "REV", "LIMIT", offset, limit + 1)

    def ids(replies: list[Any]) -> Query[dict[str, Any]]:
        found = [m.decode() for m in replies[0]]
        more, page = len(found) > limit, found[:limit]
        nxt = encode_cursor(kind, order, offset + limit) if more else None
        gets = [("HGET", item_key(pk, owner, kind, i), "doc") for i in page]

        def bodies(raws: list[Any]) -> dict[str, Any]:
            items = [b for b in (_body(raw) for raw in raws) if b is not None]
            return {"items": items, "cursor": nxt}

        return Query(gets, bodies)

    return Query([command], ids)
