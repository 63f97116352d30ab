"""A published tensor model at inference time: numpy float64, no torch.

The feature-grouped VAE (see :mod:`.train`) is an encoder/decoder pair per feature group.
Each half is a linear map (initialised from a weighted PCA) plus a one-hidden-layer tanh
residual; the encoder's output is the VAE's mean, used as the latent (the variance head
only matters in training and is not published). Inference runs here in float64 numpy,
the same code in the worker and the reader: a decode in the reader repeats the worker's
decode bit for bit on the same build, so the error the worker measured is the error the
reader returns (and a safety factor covers another machine's rounding, see
:data:`SAFETY`).

Weights are safetensors (``safetensors.numpy.load``: no pickle, no ``torch.load``); the
configuration is canonical JSON. Version = first 16 hex digits of sha256(config, weights).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FORMAT = 1
SAFETY = 0.99
"""A latent is kept only when its measured error is under 99% of the bound: float64
decodes on another CPU or BLAS build differ from ours by ~1e-12 relative, far less."""

F64 = npt.NDArray[np.float64]
PARTS = (
    "mean",
    "scale",
    "enc_w",
    "enc_b",
    "enc_hw",
    "enc_hb",
    "enc_ow",
    "dec_w",
    "dec_b",
    "dec_hw",
    "dec_hb",
    "dec_ow",
)


class ModelError(ValueError):
    """Stored weights or configuration that cannot be used (the worker stores losslessly)."""


@dataclass(frozen=True, slots=True)
class GroupSpec:
    name: str
    start: int
    end: int
    bound: float
    latent: int
    hidden: int


@dataclass(frozen=True, slots=True)
class GroupNet:
    """One group's encoder and decoder (float64)."""

    spec: GroupSpec
    p: Mapping[str, F64]

    def encode(self, x: F64) -> F64:
        """Rows of raw features -> latent means, shape (n, latent)."""
        p = self.p
        u = (x - p["mean"]) / p["scale"]
        z = u @ p["enc_w"].T + p["enc_b"]
        if self.spec.hidden:
            z = z + np.tanh(u @ p["enc_hw"].T + p["enc_hb"]) @ p["enc_ow"].T
        return z

    def decode(self, z: F64) -> F64:
        p = self.p
        u = z @ p["dec_w"].T + p["dec_b"]
        if self.spec.hidden:
            u = u + np.tanh(z @ p["dec_hw"].T + p["dec_hb"]) @ p["dec_ow"].T
        return u * p["scale"] + p["mean"]


def canonical(config: Mapping[str, Any]) -> bytes:
    return json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def content_hash(config_json: bytes, weights: bytes) -> str:
    """sha256 over both parts, length-prefixed so no two splits collide."""
    digest = hashlib.sha256()
    for part in (config_json, weights):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class GroupedModel:
    """A loaded model version: its configuration and one :class:`GroupNet` per group."""

    version: str
    sha256: str
    config: Mapping[str, Any]
    nets: tuple[GroupNet, ...]

    @property
    def dim(self) -> int:
        return int(self.config["dim"])

    def net(self, name: str) -> GroupNet | None:
        return next((n for n in self.nets if n.spec.name == name), None)

    @classmethod
    def load(cls, sha256: str, config_json: bytes, weights: bytes) -> GroupedModel:
        """Check the content hash, parse, and check every array's shape; raise
        :class:`ModelError` with the reason on any mismatch."""
        if content_hash(config_json, weights) != sha256:
            raise ModelError("content hash mismatch: weights or config corrupt")
        from safetensors.numpy import load as st_load

        try:
            config = json.loads(config_json)
            arrays = st_load(weights)
        except Exception as e:
            raise ModelError(f"unreadable model: {type(e).__name__}: {e}") from e
        if config.get("format") != FORMAT:
            raise ModelError(f"unknown model format {config.get('format')!r}")
        nets = []
        for raw in config["groups"]:
            spec = GroupSpec(**raw)
            params = {
                part: arrays[f"{spec.name}.{part}"].astype(np.float64)
                for part in PARTS
                if f"{spec.name}.{part}" in arrays
            }
            _check_shapes(spec, params)
            nets.append(GroupNet(spec, params))
        return cls(sha256[:16], sha256, config, tuple(nets))


def _check_shapes(spec: GroupSpec, p: Mapping[str, F64]) -> None:
    d, k, h = spec.end - spec.start, spec.latent, spec.hidden
    if k == 0:
        return  # a group the model always stores losslessly
    want = {
        "mean": (d,),
        "scale": (d,),
        "enc_w": (k, d),
        "enc_b": (k,),
        "dec_w": (d, k),
        "dec_b": (d,),
    }
    if h:
        want |= {
            "enc_hw": (h, d),
            "enc_hb": (h,),
            "enc_ow": (k, h),
            "dec_hw": (h, k),
            "dec_hb": (h,),
            "dec_ow": (d, h),
        }
    for part, shape in want.items():
        got = p.get(part)
        if got is None or got.shape != shape:
            raise ModelError(
                f"group {spec.name}: {part} has shape "
                f"{None if got is None else got.shape}, needs {shape}"
            )
        if not np.all(np.isfinite(got)):
            raise ModelError(f"group {spec.name}: {part} is not finite")
