"""State-tensor events (docs/tensors.md): a recorded tensor and a published model version.

Importing :mod:`memstream.producers.events` registers them (it re-exports both).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from .events import Blob, Event, Id, register
from .tensors import check_event as tensor_rules

_ITEMSIZE = {"float16": 2, "float32": 4, "float64": 8}


@register
class TensorRecorded(Event):
    TYPE: ClassVar[str] = "tensor.recorded"
    shape: list[Annotated[int, Field(ge=1)]] = Field(min_length=1, max_length=8)
    dtype: Literal["float16", "float32", "float64"] = "float32"
    data: Blob
    groups: dict[Id, list[Annotated[int, Field(ge=0)]]] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)
    kind: Id = "state"  # tensors: the model family (docs/tensors.md)
    bounds: dict[Id, float] = Field(default_factory=dict)  # tensors: group -> max rel. error

    @model_validator(mode="after")
    def _size_matches_shape(self) -> TensorRecorded:
        expected = math.prod(self.shape) * _ITEMSIZE[self.dtype]
        if len(self.data) != expected:
            raise ValueError(
                f"data has {len(self.data)} bytes; shape {self.shape} of {self.dtype} "
                f"needs {expected}"
            )
        tensor_rules(self.groups, self.bounds, self.data, self.dtype)  # tensors
        return self


@register
class TensorModelPublished(Event):
    """A tensor model version (docs/tensors.md): its weights live content-addressed under
    ``keys.tensor_model(sha256)``; replay re-encodes with the versions the log names."""

    TYPE: ClassVar[str] = "tensor.model_published"
    kind: Id
    scope: Id | None = None
    version: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    config: dict[str, Any]
