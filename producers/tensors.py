"""Tensor input for ``record_tensor``: buffers read without numpy or torch, and group rules.

The producer must stay light (no numpy, no torch), so an array is read through the
buffer protocol (numpy, ``array.array``, ``memoryview``), ``__array_interface__`` or, last,
``__array__()`` (a torch CPU tensor hands over a numpy view of itself). The log keeps the
exact bytes, little-endian, in C order.

Groups name feature ranges of the flattened vector with their own error bound:
``{"critical": (0, 10, 0.01), "other": (10, 50, 0.1)}``. Features outside every group
form the implicit group :data:`REST` with :data:`DEFAULT_BOUND`.
"""

from __future__ import annotations

import ctypes
import itertools
import math
import struct
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import InvalidInputError

ITEMSIZE = {"float16": 2, "float32": 4, "float64": 8}
CODE = {"float16": "e", "float32": "f", "float64": "d"}
"""struct codes of the supported dtypes."""
_BY_CODE = {"e": "float16", "f": "float32", "d": "float64"}
_BY_TYPESTR = {"f2": "float16", "f4": "float32", "f8": "float64"}

DEFAULT_BOUND = 0.05
"""Relative L2 error bound of a group recorded without one, and of :data:`REST`."""
REST = "_rest"
"""The implicit group of features no named group covers. Ids start with a letter or a
digit, so it can never collide with a user's group."""
MAX_DIMS = 8


@dataclass(frozen=True, slots=True)
class Tensor:
    """An array's exact little-endian C-order bytes, its shape and dtype."""

    shape: list[int]
    dtype: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Group:
    """One feature range ``[start, end)`` of the flattened vector and its error bound."""

    name: str
    start: int
    end: int
    bound: float


def read_array(array: object) -> Tensor:
    """Read any buffer / ``__array_interface__`` / ``__array__`` object as a :class:`Tensor`.

    Raises :class:`InvalidInputError` (field ``array``) for other objects, dtypes other
    than float16/32/64, a rank outside 1..8 and non-finite values.
    """
    tensor = _read(array, depth=0)
    if not 1 <= len(tensor.shape) <= MAX_DIMS:
        raise InvalidInputError("array", f"must have 1 to {MAX_DIMS} dimensions", tensor.shape)
    if min(tensor.shape) < 1:
        raise InvalidInputError("array", "must not be empty (every dimension >= 1)", tensor.shape)
    index = first_non_finite(tensor.data, tensor.dtype)
    if index is not None:
        raise InvalidInputError("array", f"must be finite: element {index} is NaN or infinite")
    return tensor


def _read(array: object, depth: int) -> Tensor:
    try:
        view = memoryview(array)  # type: ignore[arg-type]
    except TypeError:
        view = None
    if view is not None:
        return _from_view(view)
    interface = getattr(array, "__array_interface__", None)
    if isinstance(interface, dict):
        return _from_interface(array, interface)
    to_array = getattr(array, "__array__", None)
    if callable(to_array) and depth == 0:
        try:
            converted = to_array()
        except Exception as e:  # a torch tensor on a GPU, bfloat16, ...
            raise InvalidInputError("array", f"could not be read as an array: {e}") from e
        return _read(converted, depth + 1)
    raise InvalidInputError(
        "array",
        "must support the buffer protocol or __array_interface__ (numpy, torch CPU)",
        type(array).__name__,
    )


def _from_view(view: memoryview) -> Tensor:
    fmt = view.format
    order, code = (fmt[0], fmt[1:]) if fmt[:1] in "<>=!@" else ("@", fmt)
    dtype = _BY_CODE.get(code)
    if dtype is None:
        raise InvalidInputError("array", "dtype must be float16, float32 or float64", fmt)
    shape = list(view.shape or (view.nbytes // view.itemsize,))
    data = view.tobytes()  # C order, whatever the strides
    big = order in ">!" or (order in "@=" and sys.byteorder == "big")
    return Tensor(shape, dtype, _swapped(data, dtype) if big else data)


def _from_interface(owner: object, interface: dict[str, Any]) -> Tensor:
    typestr = str(interface.get("typestr", ""))
    dtype = _BY_TYPESTR.get(typestr[1:])
    if dtype is None:
        raise InvalidInputError("array", "dtype must be float16, float32 or float64", typestr)
    shape = [int(n) for n in interface.get("shape", ())]
    if interface.get("strides") is not None:
        raise InvalidInputError("array", "must be C-contiguous (make a contiguous copy first)")
    nbytes = math.prod(shape) * ITEMSIZE[dtype]
    data_field = interface.get("data")
    if isinstance(data_field, tuple):
        # A raw pointer: ``owner`` stays referenced (an argument) while it is copied.
        data = ctypes.string_at(int(data_field[0]), nbytes)
    else:
        data = memoryview(data_field).tobytes()[:nbytes]  # type: ignore[arg-type]
    big = typestr[0] == ">" or (typestr[0] == "=" and sys.byteorder == "big")
    return Tensor(shape, dtype, _swapped(data, dtype) if big else data)


def _swapped(data: bytes, dtype: str) -> bytes:
    n, code = len(data) // ITEMSIZE[dtype], CODE[dtype]
    return struct.pack(f"<{n}{code}", *struct.unpack(f">{n}{code}", data))


def first_non_finite(data: bytes, dtype: str) -> int | None:
    """Index of the first NaN or infinite element of little-endian ``data``, else None."""
    values = struct.unpack(f"<{len(data) // ITEMSIZE[dtype]}{CODE[dtype]}", data)
    if all(map(math.isfinite, values)):
        return None
    return next(i for i, v in enumerate(values) if not math.isfinite(v))


def split_groups(
    groups: Mapping[str, Sequence[float]] | None,
) -> tuple[dict[str, list[int]], dict[str, float]]:
    """``{name: (start, end, bound)}`` -> the event's ``groups`` and ``bounds`` fields.

    A 2-tuple ``(start, end)`` takes :data:`DEFAULT_BOUND`.
    """
    ranges: dict[str, list[int]] = {}
    bounds: dict[str, float] = {}
    for name, spec in (groups or {}).items():
        where = f"groups.{name}"
        if not isinstance(spec, Sequence) or isinstance(spec, str) or len(spec) not in (2, 3):
            raise InvalidInputError(where, "must be (start, end) or (start, end, bound)", spec)
        start, end = spec[0], spec[1]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
            raise InvalidInputError(where, "start and end must be integers", spec)
        ranges[name] = [int(start), int(end)]
        if len(spec) == 3:
            bounds[name] = _bound(where, spec[2])
    return ranges, bounds


def _bound(where: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(where, "error bound must be a number in (0, 1]", value)
    if not (math.isfinite(value) and 0 < value <= 1):
        raise InvalidInputError(where, "error bound must be in (0, 1]", value)
    return float(value)


def layout(
    groups: Mapping[str, Sequence[int]], bounds: Mapping[str, float], size: int
) -> list[Group]:
    """The groups of a ``size``-element vector, checked, in feature order, with
    :data:`REST` covering the features no group names. Raises :class:`InvalidInputError`
    naming ``groups.<name>`` (or ``bounds.<name>``) and the rule it broke."""
    for name, value in bounds.items():
        if name not in groups:
            raise InvalidInputError(f"bounds.{name}", "names no group", value)
        _bound(f"bounds.{name}", value)
    named = sorted((_group(name, span, bounds, size) for name, span in groups.items()),
                   key=lambda g: g.start)  # fmt: skip
    for group, following in itertools.pairwise(named):
        if following.start < group.end:
            raise InvalidInputError(f"groups.{following.name}", f"overlaps group {group.name}")
    return _with_rest(named, size)


def _group(name: str, span: Sequence[int], bounds: Mapping[str, float], size: int) -> Group:
    where = f"groups.{name}"
    if name == REST or len(span) != 2:
        raise InvalidInputError(where, "must be [start, end]", list(span))
    start, end = int(span[0]), int(span[1])
    if not 0 <= start < end:
        raise InvalidInputError(where, "needs 0 <= start < end", [start, end])
    if end > size:
        raise InvalidInputError(where, f"ends outside the vector ({size} elements)", end)
    return Group(name, start, end, float(bounds.get(name, DEFAULT_BOUND)))


def _with_rest(named: list[Group], size: int) -> list[Group]:
    """``named`` (sorted, disjoint) plus implicit groups over the features they miss."""
    rest: list[tuple[int, int]] = []
    at = 0
    for group in named:
        if group.start > at:
            rest.append((at, group.start))
        at = group.end
    if at < size:
        rest.append((at, size))
    if len(rest) == 1:
        extra = [Group(REST, rest[0][0], rest[0][1], DEFAULT_BOUND)]
    else:
        # Gaps between named groups: one implicit group per gap keeps ranges contiguous.
        extra = [Group(f"{REST}{i}", a, b, DEFAULT_BOUND) for i, (a, b) in enumerate(rest)]
    return sorted([*named, *extra], key=lambda g: g.start)


def check_event(
    groups: Mapping[str, Sequence[int]], bounds: Mapping[str, float], data: bytes, dtype: str
) -> None:
    """The ``tensor.recorded`` rules the model cannot say in types: groups inside the
    vector and disjoint, bounds in (0, 1], finite values. A raw append that breaks one
    fails validation, so the worker dead-letters it with this reason."""
    layout(groups, bounds, len(data) // ITEMSIZE[dtype])
    index = first_non_finite(data, dtype)
    if index is not None:
        raise InvalidInputError("data", f"must be finite: element {index} is NaN or infinite")
