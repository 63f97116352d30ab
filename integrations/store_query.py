"""Matching and scoring for :mod:`.langgraph_store`: LangGraph's filters and namespace
conditions, BM25 over the items of a prefix, and items as LangGraph's field values."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from langgraph.store.base import MatchCondition

K1, B = 1.2, 0.75


def item_fields(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "namespace": tuple(item["namespace"]), "key": item["key"], "value": item["value"],
        "created_at": datetime.fromtimestamp(item["created_at"] / 1000, UTC),
        "updated_at": datetime.fromtimestamp(item["updated_at"] / 1000, UTC),
    }  # fmt: skip


def ns_matches(condition: MatchCondition, ns: tuple[str, ...]) -> bool:
    path = tuple(condition.path)
    if len(ns) < len(path):
        return False
    part = ns[: len(path)] if condition.match_type == "prefix" else ns[len(ns) - len(path) :]
    return all(want in ("*", have) for have, want in zip(part, path, strict=True))


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "$eq": lambda a, b: a == b,
    "$ne": lambda a, b: a != b,
    "$gt": lambda a, b: a is not None and float(a) > float(b),
    "$gte": lambda a, b: a is not None and float(a) >= float(b),
    "$lt": lambda a, b: a is not None and float(a) < float(b),
    "$lte": lambda a, b: a is not None and float(a) <= float(b),
}


def matches(value: Any, want: Any) -> bool:
    """``value`` against a LangGraph filter: nested dicts, operators, else equality."""
    if isinstance(want, dict):
        if any(isinstance(k, str) and k.startswith("$") for k in want):
            unknown = [k for k in want if k not in _OPS]
            if unknown:
                raise ValueError(f"unsupported filter operator {unknown[0]!r}")
            return all(_OPS[k](value, v) for k, v in want.items())
        return isinstance(value, dict) and all(matches(value.get(k), v) for k, v in want.items())
    return bool(value == want)


def bm25(query: list[str], items: list[dict[str, Any]]) -> list[tuple[float, dict[str, Any]]]:
    """BM25 over the candidate items (idf from them): the same shape of score as
    ``Reader.search``, over the store's own term counts."""
    docs = [i.get("terms") or {} for i in items]
    n = len(docs)
    avg = (sum(sum(d.values()) for d in docs) / n) if n else 0.0
    out = []
    for item, terms in zip(items, docs, strict=True):
        length = sum(terms.values())
        score = 0.0
        for term in set(query):
            tf = terms.get(term, 0)
            if tf:
                df = sum(1 for d in docs if term in d)
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                score += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * length / (avg or 1)))
        out.append((score, item))
    return out
