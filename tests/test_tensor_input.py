"""record_tensor's input: every array flavour keeps its exact bytes; bad input is named."""

from __future__ import annotations

import array
import struct
from typing import Any

import numpy as np
import pytest
import torch

from memstream.producers import InvalidInputError
from memstream.producers.events import Event
from memstream.producers.events_tensors import TensorRecorded
from memstream.producers.helpers import AppendHelpers
from memstream.producers.tensors import REST, layout, read_array
from tests.tensor_util import GROUPS


class Capture(AppendHelpers[Event]):
    """The helpers without a transport: returns the event that would be appended."""

    def append(
        self, owner: str, event: Event, *, session: str | None = None, eid: str | None = None
    ) -> Event:
        return event


def record(array_like: object, **kw: Any) -> TensorRecorded:
    event = Capture().record_tensor("agent-1", array_like, **kw)
    assert isinstance(event, TensorRecorded)
    return event


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_numpy_arrays_keep_their_exact_bytes(dtype: str) -> None:
    a = (np.random.default_rng(0).normal(size=(3, 4)) * 100).astype(dtype)
    event = record(a)
    assert (event.shape, event.dtype, event.data) == ([3, 4], dtype, a.tobytes())


def test_non_contiguous_big_endian_and_torch_are_read_in_c_order_little_endian() -> None:
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert record(a.T).data == np.ascontiguousarray(a.T).tobytes()
    assert record(a.astype(">f4")).data == a.astype("<f4").tobytes()
    t = torch.arange(6, dtype=torch.float64).reshape(2, 3)
    event = record(t.T)
    assert event.shape == [3, 2] and event.data == t.T.contiguous().numpy().tobytes()
    assert record(array.array("d", [1.5, 2.5])).data == struct.pack("<2d", 1.5, 2.5)


class Interface:
    """Only ``__array_interface__`` (a raw pointer), like some array libraries."""

    def __init__(self, a: np.ndarray[Any, Any]) -> None:
        self.a = a
        self.__array_interface__ = {
            "shape": a.shape,
            "typestr": a.dtype.str,
            "data": (a.ctypes.data, True),
            "strides": None,
            "version": 3,
        }


def test_array_interface_pointer() -> None:
    a = np.linspace(0, 1, 7, dtype=np.float64)
    assert record(Interface(a)).data == a.tobytes()


def test_groups_become_ranges_and_bounds_with_an_implicit_rest() -> None:
    event = record(np.zeros(60, np.float32), groups=GROUPS)
    assert event.groups["critical"] == [0, 10] and event.bounds["critical"] == 0.01
    names = [g.name for g in layout(event.groups, event.bounds, 60)]
    assert names == ["critical", "spatial", "social", "other", REST]


@pytest.mark.parametrize(
    ("kwargs", "field", "rule"),
    [
        ({"array": np.array([1.0, np.nan], np.float32)}, "array", "finite"),
        ({"array": np.array([np.inf], np.float64)}, "array", "finite"),
        ({"array": np.zeros(4, np.int32)}, "array", "float16, float32 or float64"),
        ({"array": [1.0, 2.0]}, "array", "buffer protocol"),
        ({"array": np.zeros((0, 3), np.float32)}, "array", "empty"),
        ({"groups": {"a": (0, 3, 0.1), "b": (2, 5, 0.1)}}, "groups.b", "overlaps group a"),
        ({"groups": {"a": (0, 9, 0.1)}}, "groups.a", "outside the vector"),
        ({"groups": {"a": (3, 3, 0.1)}}, "groups.a", "start < end"),
        ({"groups": {"a": (0, 3, 0.0)}}, "groups.a", "(0, 1]"),
        ({"groups": {"a": (0, 3, 1.5)}}, "groups.a", "(0, 1]"),
        ({"groups": {"a": (0, 3, float("nan"))}}, "groups.a", "(0, 1]"),
        ({"groups": {"a": (0.5, 3, 0.1)}}, "groups.a", "integers"),
        ({"groups": {"bad name!": (0, 3, 0.1)}}, "groups", ""),
        ({"kind": "no spaces"}, "kind", ""),
    ],
)
def test_bad_input_is_named(kwargs: dict[str, Any], field: str, rule: str) -> None:
    array_like = kwargs.pop("array", np.zeros(8, np.float32))
    with pytest.raises(InvalidInputError) as info:
        record(array_like, **kwargs)
    assert info.value.field.startswith(field) and rule in str(info.value)


def test_raw_events_are_checked_by_the_model_too() -> None:
    # A raw append (another language, redis-cli) is validated when the worker decodes it:
    # these fail validation, so the worker dead-letters them with the reason.
    good = np.zeros(4, np.float32).tobytes()
    with pytest.raises(ValueError, match="overlaps"):
        TensorRecorded(shape=[4], data=good, groups={"a": [0, 3], "b": [2, 4]})
    with pytest.raises(ValueError, match="finite"):
        TensorRecorded(shape=[1], data=struct.pack("<f", float("nan")))
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        TensorRecorded(shape=[4], data=good, groups={"a": [0, 3]}, bounds={"a": 2.0})


def test_read_array_rejects_too_many_dimensions() -> None:
    with pytest.raises(InvalidInputError, match="1 to 8 dimensions"):
        read_array(np.zeros([1] * 9, np.float32))
