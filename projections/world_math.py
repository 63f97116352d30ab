"""The world model's maths, pure: hierarchical Dirichlet shrinkage and Beta quantiles.

No scipy at run time (it is a dev dependency): the regularized incomplete beta function is
a Lentz continued fraction, and its inverse a Newton iteration kept inside a bisection
bracket, so a step can never leave ``[0, 1]`` or stall. Tests hold both to scipy at 1e-9.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

_TINY = 1e-300
_EPS = 1e-16
_MAX_TERMS = 100_000


@dataclass(frozen=True, slots=True)
class Posterior:
    """Dirichlet posterior of one node: ``alpha[k]`` per outcome; ``mean`` = alpha / sum."""

    alpha: tuple[float, ...]

    @property
    def total(self) -> float:
        return math.fsum(self.alpha)

    @property
    def mean(self) -> tuple[float, ...]:
        total = self.total
        return tuple(a / total for a in self.alpha)


def shrink(counts: Sequence[Sequence[float]], *, kappa: float, alpha0: float) -> list[Posterior]:
    """Posteriors down a path, ``counts[0]`` the root's.

    Root: Dirichlet(alpha0, ..., alpha0) prior. Every other node: prior = kappa times its
    parent's posterior mean. Posterior = prior + the node's own counts.
    """
    out: list[Posterior] = []
    for i, row in enumerate(counts):
        prior = [alpha0] * len(row) if i == 0 else [kappa * m for m in out[-1].mean]
        out.append(Posterior(tuple(p + c for p, c in zip(prior, row, strict=True))))
    return out


def entropy(p: Sequence[float]) -> float:
    """Shannon entropy in nats."""
    return -math.fsum(x * math.log(x) for x in p if x > 0)


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _continued_fraction(a: float, b: float, x: float) -> float:
    """Lentz's evaluation of the incomplete beta continued fraction (converges fast for
    x < (a + 1) / (a + b + 2))."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _MAX_TERMS):
        m2 = 2 * m
        for aa in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + aa / c
            c = c if abs(c) > _TINY else _TINY
            delta = d * c
            h *= delta
        if abs(delta - 1.0) < _EPS:
            return h
    return h


def beta_cdf(x: float, a: float, b: float) -> float:
    """Regularized incomplete beta I_x(a, b): P(X <= x) for X ~ Beta(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(a * math.log(x) + b * math.log1p(-x) - _log_beta(a, b))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _continued_fraction(a, b, x) / a
    return 1.0 - front * _continued_fraction(b, a, 1.0 - x) / b


def _log_pdf(x: float, a: float, b: float) -> float:
    return (a - 1.0) * math.log(x) + (b - 1.0) * math.log1p(-x) - _log_beta(a, b)


def beta_ppf(q: float, a: float, b: float) -> float:
    """The ``q`` quantile of Beta(a, b), a and b > 0."""
    if not (a > 0 and b > 0 and math.isfinite(a) and math.isfinite(b)):
        raise ValueError(f"Beta parameters must be positive and finite, got {a}, {b}")
    if q <= 0.0:
        return 0.0
    if q >= 1.0:
        return 1.0
    lo, hi = 0.0, 1.0
    x = a / (a + b)
    for _ in range(400):
        f = beta_cdf(x, a, b) - q
        if f == 0.0:
            return x
        if f < 0.0:
            lo = x
        else:
            hi = x
        try:
            nxt = x - f / math.exp(_log_pdf(x, a, b))
        except (OverflowError, ZeroDivisionError):
            nxt = math.nan
        if not lo < nxt < hi:
            nxt = 0.5 * (lo + hi)  # Newton left the bracket: bisect instead
        if abs(nxt - x) <= 1e-15 * x or hi - lo <= 1e-300:
            return nxt
        x = nxt
    return x


def credible_interval(a: float, b: float, mass: float) -> tuple[float, float]:
    """Equal-tailed interval holding ``mass`` of Beta(a, b)."""
    tail = (1.0 - mass) / 2.0
    return beta_ppf(tail, a, b), beta_ppf(1.0 - tail, a, b)
