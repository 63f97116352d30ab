"""Shared data for the tensor tests: the issue's 50-feature, four-group layout."""

from __future__ import annotations

from typing import Any

import numpy as np

GROUPS = {
    "critical": (0, 10, 0.01),
    "spatial": (10, 20, 0.05),
    "social": (20, 30, 0.05),
    "other": (30, 50, 0.10),
}


def structured(n: int, seed: int = 0, dim: int = 50, rank: int = 6) -> np.ndarray[Any, Any]:
    """Low-rank vectors plus a little noise, as agent states tend to be."""
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(99).normal(size=(rank, dim))
    offset = np.random.default_rng(98).normal(size=dim) * 3
    z = rng.normal(size=(n, rank))
    return (z @ basis + offset + rng.normal(scale=0.01, size=(n, dim))).astype(np.float32)


def adversarial(n: int, seed: int = 1, dim: int = 50) -> np.ndarray[Any, Any]:
    """Far from the training data: huge, tiny, zero, sparse spikes, sign flips."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        kind = i % 6
        if kind == 0:
            v = rng.normal(size=dim) * 1e4
        elif kind == 1:
            v = rng.normal(size=dim) * 1e-6
        elif kind == 2:
            v = np.zeros(dim)
        elif kind == 3:
            v = np.zeros(dim)
            v[rng.integers(dim)] = rng.normal() * 100
        elif kind == 4:
            v = -structured(1, seed + i)[0] * 50
        else:
            v = rng.uniform(-6e4, 6e4, size=dim)
        out.append(v)
    return np.asarray(out, dtype=np.float32)
