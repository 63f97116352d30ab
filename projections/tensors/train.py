"""Training the feature-grouped VAE (torch, CPU, deterministic given a seed).

Per group: a weighted PCA (rows weighted by 1/||x_g||^2, so it minimises the summed
squared *relative* error the bound is about) chooses the latent size — the smallest
expected stored bytes, 2 bytes per float16 latent plus the lossless bytes times the share
of training vectors that would miss the bound — and initialises the linear encoder and
decoder. A tanh residual branch (zero-initialised, so training starts from the PCA
solution) and a variance head make it a VAE: trained on the L1 reconstruction error
relative to the vector's norm and the bound, plus a small KL term, with the
reparameterised sample. The
published model keeps the mean path only (:mod:`.model`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from memstream.producers.tensors import Group

from .codec import correction_bytes
from .model import F64, FORMAT, SAFETY, GroupedModel, GroupNet, GroupSpec

BETA = 1e-4
"""Weight of the KL term: enough to keep latents smooth, small next to the bound."""


@dataclass(frozen=True, slots=True)
class GroupReport:
    name: str
    features: int
    latent: int
    hidden: int
    bound: float
    heldout_error_p50: float
    heldout_fallback: float
    ratio: float


def hidden_width(features: int, bound: float) -> int:
    """Tighter bounds get wider residual layers: 2 x features at 5%, more below."""
    return int(min(128, max(8, round(2 * features * (0.05 / bound) ** 0.25))))


def _weighted_pca(x: F64) -> tuple[F64, F64, F64]:
    mean = x.mean(axis=0)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    w = (x - mean) / np.where(norms > 0, norms, 1.0)
    _, _, vt = np.linalg.svd(w, full_matrices=False)
    return mean, vt, norms[:, 0]


def row_errors(x: F64, back: F64) -> F64:
    """:func:`~.codec.relative_error` of every row at once."""
    with np.errstate(all="ignore"):
        diff = np.linalg.norm(x - back, axis=1)
        norm = np.linalg.norm(x, axis=1)
        err = np.where(
            norm > 0, diff / np.where(norm > 0, norm, 1.0), np.where(diff == 0, 0, np.inf)
        )
    return np.where(np.all(np.isfinite(back), axis=1), err, np.inf)


def expected_bytes(
    x: F64, back: F64, k: int, bound: float, itemsize: int, *, sparse: bool = True
) -> float:
    """Mean stored bytes per vector at latent size ``k``: the latent, the sparse corrections
    each vector needs to meet the bound (see :func:`.codec.encode_groups`), or the lossless
    bytes when those cost more."""
    d = x.shape[1]
    residual = np.where(np.isfinite(back), x - back, np.inf)
    energy = np.sort(residual**2, axis=1)[:, ::-1]
    left = energy.sum(axis=1, keepdims=True) - np.cumsum(energy, axis=1)
    target = (bound * SAFETY * np.linalg.norm(x, axis=1, keepdims=True)) ** 2
    ok = row_errors(x, back) <= bound * SAFETY
    if not sparse:
        return float(np.mean(np.where(ok, 2 * k, d * itemsize)))
    needed = np.where(ok, 0, (left > target).sum(axis=1) + 1)
    cost = 2 * k + np.where(needed > 0, 2 + correction_bytes(d) * needed, 0)
    return float(np.mean(np.minimum(cost, d * itemsize)))


def choose_latent(x: F64, bound: float, itemsize: int, *, sparse: bool = True) -> int:
    """The latent size with the fewest expected stored bytes on ``x`` (0: always lossless).

    Adds one component at a time to the reconstruction (O(n d) per size, not O(n d k))."""
    x = x[:2000]
    d = x.shape[1]
    mean, vt, _ = _weighted_pca(x)
    scale = float(np.sqrt(np.mean((x - mean) ** 2))) or 1.0
    z16 = (((x - mean) / scale) @ vt.T).astype(np.float16).astype(np.float64)
    back = np.broadcast_to(mean, x.shape).copy()
    best, best_bytes = 0, float(d * itemsize)
    for k in range(1, vt.shape[0] + 1):
        if 2 * k >= best_bytes:
            break
        back += np.outer(z16[:, k - 1], vt[k - 1]) * scale
        expected = expected_bytes(x, back, k, bound, itemsize, sparse=sparse)
        if expected < best_bytes:
            best, best_bytes = k, expected
    return best


def _train_group(
    x: F64, spec: GroupSpec, epochs: int, seed: int, tick: Callable[[], None]
) -> dict[str, F64]:
    import torch

    d, k, h = x.shape[1], spec.latent, spec.hidden
    mean, vt, _ = _weighted_pca(x)
    scale = float(np.sqrt(np.mean((x - mean) ** 2))) or 1.0
    torch.manual_seed(seed)
    t = torch.float64
    basis = torch.tensor(vt[:k], dtype=t)
    p = {
        "enc_w": basis.clone(),
        "enc_b": torch.zeros(k, dtype=t),
        "enc_hw": torch.randn(h, d, dtype=t) / math.sqrt(d),
        "enc_hb": torch.zeros(h, dtype=t),
        "enc_ow": torch.zeros(k, h, dtype=t),
        "dec_w": basis.T.clone(),
        "dec_b": torch.zeros(d, dtype=t),
        "dec_hw": torch.randn(h, k, dtype=t) / math.sqrt(k),
        "dec_hb": torch.zeros(h, dtype=t),
        "dec_ow": torch.zeros(d, h, dtype=t),
        "logvar_w": torch.zeros(k, d, dtype=t),
        "logvar_b": torch.full((k,), -8.0, dtype=t),
    }
    for tensor in p.values():
        tensor.requires_grad_(True)
    opt = torch.optim.Adam(list(p.values()), lr=1e-3)
    data = torch.tensor((x - mean) / scale, dtype=t)
    norm2 = (data * scale + torch.tensor(mean, dtype=t)).pow(2).sum(1).clamp_min(1e-12)
    gen = torch.Generator().manual_seed(seed)
    batch = min(256, len(data))
    for _ in range(epochs):
        for idx in torch.split(torch.randperm(len(data), generator=gen), batch):
            u, n2 = data[idx], norm2[idx]
            mu = (
                u @ p["enc_w"].T
                + p["enc_b"]
                + torch.tanh(u @ p["enc_hw"].T + p["enc_hb"]) @ p["enc_ow"].T
            )
            logvar = u @ p["logvar_w"].T + p["logvar_b"]
            z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=gen, dtype=t)
            out = (
                z @ p["dec_w"].T
                + p["dec_b"]
                + torch.tanh(z @ p["dec_hw"].T + p["dec_hb"]) @ p["dec_ow"].T
            )
            # L1, relative to the vector's norm and the bound: it leaves the residual on
            # few features, which the sparse corrections then fix cheaply. The squared
            # error spreads it; in bench/tensors.py it made training worse than its PCA
            # start (Humanoid 13.6x against 14.1x untrained; L1 15.2x).
            rel = ((out - u) * scale).abs().sum(1) / n2.sqrt() / spec.bound
            kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)
            loss = (rel + BETA * kl).mean()
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
        tick()
    result: dict[str, F64] = {
        name: v.detach().numpy().copy() for name, v in p.items() if not name.startswith("logvar")
    }
    result["mean"] = mean
    result["scale"] = np.full(d, scale)
    return result


def train(
    vectors: F64,
    groups: Sequence[Group],
    *,
    kind: str,
    scope: str | None = None,
    epochs: int = 30,
    seed: int = 0,
    latent: dict[str, int] | None = None,
    itemsize: int = 4,
    heldout: float = 0.2,
    tick: Callable[[], None] = lambda: None,
) -> tuple[dict[str, Any], dict[str, F64], list[GroupReport]]:
    """Train on ``vectors`` (n, dim), deterministic given ``seed``: the published config,
    the weights (name -> float32 array) and a held-out report per group."""
    import torch

    torch.use_deterministic_algorithms(True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the same sums in the same order every run
    try:
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(vectors))
        n_held = int(len(vectors) * heldout) if len(vectors) >= 10 else 0
        held, fit = vectors[order[:n_held]], vectors[order[n_held:]]
        specs: list[GroupSpec] = []
        weights: dict[str, F64] = {}
        for i, group in enumerate(groups):
            xs = fit[:, group.start : group.end]
            k = (latent or {}).get(group.name, choose_latent(xs, group.bound, itemsize))
            k = min(k, group.end - group.start)
            spec = GroupSpec(
                group.name,
                group.start,
                group.end,
                group.bound,
                k,
                hidden_width(group.end - group.start, group.bound) if k else 0,
            )
            specs.append(spec)
            if k:
                params = _train_group(xs, spec, epochs, seed + i, tick)
                weights |= {f"{group.name}.{n}": v.astype(np.float64) for n, v in params.items()}
        config = {
            "format": FORMAT,
            "kind": kind,
            "scope": scope,
            "dim": int(vectors.shape[1]),
            "groups": [_spec_dict(s) for s in specs],
            "train": {"seed": seed, "epochs": epochs, "vectors": len(fit), "heldout": n_held},
        }
        model = _in_memory(config, weights)
        return config, weights, _report(model, held if n_held else fit, itemsize)
    finally:
        torch.set_num_threads(threads)


def _spec_dict(s: GroupSpec) -> dict[str, Any]:
    return {
        "name": s.name,
        "start": s.start,
        "end": s.end,
        "bound": s.bound,
        "latent": s.latent,
        "hidden": s.hidden,
    }


def _in_memory(config: dict[str, Any], weights: dict[str, F64]) -> GroupedModel:
    nets = []
    for raw in config["groups"]:
        spec = GroupSpec(**raw)
        prefix = f"{spec.name}."
        params = {n[len(prefix) :]: v for n, v in weights.items() if n.startswith(prefix)}
        nets.append(GroupNet(spec, params))
    return GroupedModel("0" * 16, "0" * 64, config, tuple(nets))


def _report(model: GroupedModel, x: F64, itemsize: int) -> list[GroupReport]:
    from .codec import encode_groups

    out = []
    groups = [Group(n.spec.name, n.spec.start, n.spec.end, n.spec.bound) for n in model.nets]
    rows = [encode_groups(v.astype(np.float32), "float32", groups, model) for v in x]
    for i, net in enumerate(model.nets):
        s = net.spec
        mine = [r[i] for r in rows]
        errors = [g.error for g in mine if g.codec == "vae"]
        stored = sum(len(g.payload) for g in mine) or 1
        out.append(
            GroupReport(
                s.name,
                s.end - s.start,
                s.latent,
                s.hidden,
                s.bound,
                float(np.median(errors)) if errors else 0.0,
                sum(g.codec != "vae" for g in mine) / max(len(mine), 1),
                (s.end - s.start) * itemsize * len(mine) / stored,
            )
        )
    return out
