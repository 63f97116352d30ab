"""The ranges of the op language: what :func:`check_ops` lets a projection emit.

The planner checks every entry's ops against these rules before encoding them, so an op
that breaks one is dead-lettered alone with a readable reason; apply.lua re-checks the
same rules before the first write of an entry (a caller other than our planner).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from memstream.producers.errors import InvalidInputError

from .ops import VERSION_LEN, Op

MAX_INT = 2**53
"""Bound of every integer an op carries (counter increments, scores, times): integers up
to it are exact as Lua numbers, and apply.lua checks the same bound."""
MAX_CAP = 2**31 - 1
_VERSION = re.compile(r"\d{13}-\d{10}")


class OpRangeError(InvalidInputError):
    """An op argument out of its documented range: the entry is dead-lettered alone."""


def _int(value: object, lo: int = -MAX_INT, hi: int = MAX_INT) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def _text(value: object) -> bool:
    return isinstance(value, (str, bytes))


def _ver(value: object) -> bool:
    return isinstance(value, str) and _VERSION.fullmatch(value) is not None


def _score(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value) and abs(value) <= MAX_INT
    return _int(value)


def _decimal(value: object) -> bool:
    """A score sent as text (exact): a finite number within MAX_INT, at most 32 chars."""
    if not isinstance(value, str) or len(value) > 32:
        return False
    try:
        number = float(value)
    except ValueError:
        return False
    return math.isfinite(number) and abs(number) <= MAX_INT


def _key(value: object) -> bool:
    return isinstance(value, str) and value != ""


def _opt_key(value: object) -> bool:
    return value is None or _key(value)


_ARG_RULES: dict[str, tuple[Any, ...]] = {
    "LWW": (_key, _text, _ver, _text),
    "ZLOG": (_key, _text, lambda v: _int(v, 0, MAX_CAP), _opt_key, _text),
    "CLEAR": (_key, _key, _text, _ver),
    "HMAX": (_key, _text, _text),
    "HINCR": (_key, _text, _int),
    "ZMAX": (_key, _text, _score),
    "ZMIN": (_key, _text, _score),
    "EXPAT": (_key, lambda v: _int(v, 0)),
    "EXPATF": (_key, lambda v: _int(v, 0), _key, _text),
    "SESSEXP": (_key, _key, _text, _key, _text, lambda v: _int(v, 0),
                lambda v: _int(v, 0, MAX_CAP), _key),
    "SESSEXPD": (_key, _key, _text, _key, _text, lambda v: _int(v, 0)),
    "TLADD": (_key, _text, lambda v: _text(v) and len(v) == 38 and v[24] in "cde"
              and v[25:].isdigit() and v[:24].replace("-", "").isdigit()),
    "VFLOOR": (_key, _key, _key, _key, lambda v: _text(v) and len(v) > VERSION_LEN, _key,
               _text, _key, _text),
    "VTTL": (_key, _key, _key, _key, lambda v: _text(v) and len(v) > 0,
             lambda v: _int(v, 1), _text),
    "VEXT": (_key, _key, _key, lambda v: _text(v) and len(v) > 0, lambda v: _int(v, 0), _text),
    "VCHG": (_key, _key, lambda v: _int(v, 1, MAX_CAP), lambda v: v in ("r", "x"), _text, _ver),
    "DEL": (_key,),
    "SPUB": (_key, _text),
    "LWWZ": (_key, _text, _ver, _text, _key, _text,
             lambda v: v == "" or _decimal(v)),
    "PRUNE": (_key, lambda v: _int(v, 1, 1 << 20), _opt_key, _opt_key),
    "PTR": (_key, _key, _text, _text),
}  # fmt: skip
"""Per op, one rule per argument (after the name); apply.lua re-checks the same rules."""


def check_ops(ops: Sequence[Op]) -> None:
    """Raise :class:`OpRangeError` for the first op whose arguments break their rules.

    The planner runs this on every entry before encoding it, so ``ms_apply`` never meets
    an op that cannot run (apply.lua checks again before the first write of an entry)."""
    for n, op in enumerate(ops, 1):
        name = op[0] if op else None
        rules = _ARG_RULES.get(name) if isinstance(name, str) else None
        if name == "XADD":
            args = op[2:]
            if not (_key(op[1]) and args and len(args) % 2 == 0 and all(
                    _text(a) or _int(a) for a in args)):  # fmt: skip
                raise OpRangeError(f"op {n} (XADD)", "needs a key and field/value pairs")
            continue
        if name == "WOBS":
            _check_wobs(n, op)
            continue
        if rules is None:
            raise OpRangeError(f"op {n}", f"unknown op {str(name)[:16]!r}")
        if len(op) != len(rules) + 1:
            raise OpRangeError(f"op {n} ({name})", f"takes {len(rules)} arguments")
        for i, (rule, value) in enumerate(zip(rules, op[1:], strict=True), 1):
            if not rule(value):
                raise OpRangeError(
                    f"op {n} ({name}) argument {i}",
                    "out of its range (projections/op_checks.py)",
                    repr(value)[:80],
                )


def _check_wobs(n: int, op: Op) -> None:
    depth = len(op) - 30
    ok = (
        1 <= depth <= 16
        and all(_key(op[i]) for i in (1, 2, 3, 4)) and all(_key(k) for k in op[5 : 5 + depth])
        and all(k is None for k in op[5 + depth : 21])
        and all(_text(op[i]) for i in (21, 22, 23, 27, 28, 29))
        and _int(op[24], 1) and _int(op[25], 0) and _int(op[26], 0)
        and all(_text(m) for m in op[30:])
    )  # fmt: skip
    if not ok:
        raise OpRangeError(f"op {n} (WOBS)", "an argument is out of its range")
