"""Prompt and output lengths: fixed, normal, lognormal, empirical (a user's CSV), shipped tables.

What this models: the token-length mix of real traffic. Shipped tables (``workloads/lengths/``) are
derived statistics of real datasets — 201-point quantile functions per axis plus a 20×20 rank grid
(an empirical copula) — so a fresh machine can draw ShareGPT-, arXiv- or Azure-like lengths without
the raw traces. Sampling a table is inverse-CDF through the piecewise-linear quantile function;
a joint (input, output) draw first picks a grid cell in proportion to its count, then a uniform
point inside it, which keeps the rank correlation between prompt and output lengths.

Joint draws, in order of precedence: ``length_correlation`` set → a Gaussian copula with that
Spearman rank correlation over any two marginals (each marginal is drawn through its inverse CDF,
so it is kept exactly); both axes the same table → the table's own rank grid; both axes columns of
the same empirical file → whole rows; otherwise independent.

Normal and lognormal lengths without an explicit ``max`` are clipped to the deployment's
``max_model_len`` (prompts to ``max_model_len − 1``, leaving room for one output token).

Leaves out: tokenizer differences between the source data and the simulated model (the tables say
which tokenizer they were counted with).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from simulator.errors import ConfigError
from simulator.workload.shipped import load_shipped
from simulator.workload.spec import (
    EmpiricalLength,
    FixedLength,
    Length,
    LognormalLength,
    NormalLength,
    TableLength,
    UniformLength,
)

# --------------------------------------------------------------------------------------------
# Normal distribution helpers (numpy has neither erf nor its inverse)
# --------------------------------------------------------------------------------------------

_A = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02, 1.383577518672690e02,
      -3.066479806614716e01, 2.506628277459239e00)
_B = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02, 6.680131188771972e01,
      -1.328068155288572e01)
_C = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00, -2.549732539343734e00,
      4.374664141464968e00, 2.938163982698783e00)
_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)


def norm_ppf(u: np.ndarray) -> np.ndarray:
    """Inverse standard normal CDF (Acklam's rational approximation, relative error < 1.2e-9)."""
    u = np.clip(np.asarray(u, dtype=float), 1e-300, 1 - 1e-16)
    out = np.empty_like(u)
    lo, hi = u < 0.02425, u > 1 - 0.02425
    mid = ~(lo | hi)
    q = u[mid] - 0.5
    r = q * q
    out[mid] = ((((((_A[0] * r + _A[1]) * r + _A[2]) * r + _A[3]) * r + _A[4]) * r + _A[5]) * q
                / (((((_B[0] * r + _B[1]) * r + _B[2]) * r + _B[3]) * r + _B[4]) * r + 1))
    for mask, sign in ((lo, 1.0), (hi, -1.0)):
        x = u[mask] if sign > 0 else 1 - u[mask]
        q = np.sqrt(-2 * np.log(x))
        out[mask] = sign * ((((((_C[0] * q + _C[1]) * q + _C[2]) * q + _C[3]) * q + _C[4]) * q
                             + _C[5])
                            / ((((_D[0] * q + _D[1]) * q + _D[2]) * q + _D[3]) * q + 1))
    return out


def norm_cdf(z: np.ndarray) -> np.ndarray:
    """Standard normal CDF via a Chebyshev erfc (Numerical Recipes ``erfcc``, error < 1.2e-7)."""
    x = np.abs(np.asarray(z, dtype=float)) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.5 * x)
    poly = (-x * x - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418
            + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587
            + t * (-0.82215223 + t * 0.17087277)))))))))
    erfc = t * np.exp(poly)
    return np.where(np.asarray(z) >= 0, 1.0 - 0.5 * erfc, 0.5 * erfc)


# --------------------------------------------------------------------------------------------
# One axis
# --------------------------------------------------------------------------------------------


class LengthSampler(Protocol):
    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` integer lengths (int64, ≥ 1)."""
        ...

    def quantile(self, u: np.ndarray) -> np.ndarray:
        """Lengths at probabilities ``u`` (the inverse CDF), for copula draws."""
        ...


class Fixed:
    def __init__(self, value: int) -> None:
        self.value = value

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.full(n, self.value, dtype=np.int64)

    def quantile(self, u: np.ndarray) -> np.ndarray:
        return np.full(len(u), self.value, dtype=np.int64)


class Uniform:
    """Uniform integers in [lo, hi] (vLLM's benchmark random dataset with a range ratio)."""

    def __init__(self, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.integers(self.lo, self.hi + 1, size=n, dtype=np.int64)

    def quantile(self, u: np.ndarray) -> np.ndarray:
        k = np.floor(np.asarray(u, dtype=float) * (self.hi - self.lo + 1)).astype(np.int64)
        return np.minimum(self.lo + k, self.hi)


class Normal:
    """Normal with the given mean and standard deviation, rounded and clipped."""

    def __init__(self, mean: float, std: float, lo: int, hi: float) -> None:
        self.mean, self.std, self.lo, self.hi = mean, std, lo, hi

    def _clip(self, x: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(x), self.lo, self.hi).astype(np.int64)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self._clip(rng.normal(self.mean, self.std, n))

    def quantile(self, u: np.ndarray) -> np.ndarray:
        return self._clip(self.mean + self.std * norm_ppf(u))


def _phi(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def clipped_lognormal_mean(mu: float, sigma: float, lo: float, hi: float) -> float:
    """E[clip(X, lo, hi)] for X ~ Lognormal(mu, sigma) (closed form:
    lo·P(X<lo) + hi·P(X>hi) + e^(mu+σ²/2)·[Φ((ln hi−mu−σ²)/σ) − Φ((ln lo−mu−σ²)/σ)])."""
    la = math.log(lo) if lo > 0 else -math.inf
    lb = math.log(hi) if math.isfinite(hi) else math.inf
    p_lo = _phi((la - mu) / sigma)
    p_hi = 1.0 - _phi((lb - mu) / sigma)
    body = math.exp(mu + sigma * sigma / 2) * (_phi((lb - mu - sigma * sigma) / sigma)
                                               - _phi((la - mu - sigma * sigma) / sigma))
    return lo * p_lo + (hi * p_hi if math.isfinite(hi) else 0.0) + body


def solve_lognormal_mu(mean: float, sigma: float, lo: float, hi: float) -> float:
    """The underlying ``mu`` whose clipped lognormal has mean ``mean`` (``lo`` < mean < ``hi``).
    Unclipped, mu = ln(mean) − σ²/2; that value is kept when clipping moves the mean by less than
    one part in a million (so a far-away clip leaves the draws bit-identical)."""
    mu0 = math.log(mean) - sigma * sigma / 2
    if abs(clipped_lognormal_mean(mu0, sigma, lo, hi) - mean) <= 1e-6 * mean:
        return mu0
    # NOTE: the clipped mean rises monotonically with mu from lo to hi: bisection on a bracket.
    a, b = mu0 - 1.0, mu0 + 1.0
    while clipped_lognormal_mean(a, sigma, lo, hi) > mean:
        a -= 2 * (b - a)
    while clipped_lognormal_mean(b, sigma, lo, hi) < mean:
        b += 2 * (b - a)
    for _ in range(200):
        m = 0.5 * (a + b)
        if clipped_lognormal_mean(m, sigma, lo, hi) < mean:
            a = m
        else:
            b = m
        if b - a < 1e-12:
            break
    return 0.5 * (a + b)


class Lognormal:
    """Lognormal lengths clipped to [lo, hi] whose mean after clipping is ``mean``: the shape
    sigma comes from ``cv`` (the CV of the unclipped lognormal), the location mu is solved so
    that E[clip(X, lo, hi)] = mean (draws are then rounded to whole tokens)."""

    def __init__(self, mean: float, cv: float, lo: int, hi: float) -> None:
        if not lo < mean < hi:
            raise ConfigError(f"lognormal mean {mean:g} must lie strictly between min {lo} and "
                              f"max {hi:g}: it is the mean after clipping")
        self.sigma = float(np.sqrt(np.log1p(cv * cv)))
        self.mu = solve_lognormal_mu(mean, self.sigma, lo, hi)
        self.lo, self.hi = lo, hi

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        x = rng.lognormal(self.mu, self.sigma, n)
        return np.clip(np.rint(x), self.lo, self.hi).astype(np.int64)

    def quantile(self, u: np.ndarray) -> np.ndarray:
        x = np.exp(self.mu + self.sigma * norm_ppf(u))
        return np.clip(np.rint(x), self.lo, self.hi).astype(np.int64)


class Empirical:
    """Resample (with replacement) the values of a CSV column, or play them in order."""

    def __init__(self, values: np.ndarray, sequential: bool = False) -> None:
        self.values = values
        self.sorted = np.sort(values)
        self.sequential = sequential
        self.pos = 0

    def indices(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.sequential:
            idx = (self.pos + np.arange(n)) % len(self.values)
            self.pos = (self.pos + n) % len(self.values)
            return idx
        return rng.integers(0, len(self.values), n)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.values[self.indices(rng, n)]

    def quantile(self, u: np.ndarray) -> np.ndarray:
        k = np.minimum((np.asarray(u) * len(self.sorted)).astype(np.int64), len(self.sorted) - 1)
        return self.sorted[k]


class Table:
    """Inverse-CDF sampling from a quantile table (one axis)."""

    def __init__(self, quantiles: list[float], hi: int | None = None) -> None:
        self.q = np.asarray(quantiles, dtype=float)
        self.p = np.linspace(0.0, 1.0, len(self.q))
        self.hi = hi

    def at(self, u: np.ndarray) -> np.ndarray:
        x = np.rint(np.interp(u, self.p, self.q))
        x = np.maximum(x, 1)
        if self.hi is not None:
            x = np.minimum(x, self.hi)
        return x.astype(np.int64)

    quantile = at

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.at(rng.random(n))


def load_length_table(name: str) -> dict[str, Any]:
    """Read ``workloads/lengths/<name>.yaml``."""
    return load_shipped("lengths", name, "workload.input_len/output_len", "length table",
                        ("input_tokens", "output_tokens"))


def _resolve(file: str, base_dir: str | None) -> Path:
    p = Path(file)
    if not p.is_absolute() and base_dir:
        p = Path(base_dir) / p
    return p


def _read_columns(file: str, columns: list[str], base_dir: str | None) -> list[np.ndarray]:
    p = _resolve(file, base_dir)
    try:
        df = pd.read_csv(p, usecols=columns)
    except FileNotFoundError:
        raise ConfigError(f"workload: empirical length file {p} not found") from None
    except ValueError:
        raise ConfigError(f"{p}: no column(s) {columns} (workload …len.column)") from None
    out = []
    for column in columns:
        s = pd.to_numeric(df[column], errors="coerce")
        bad = s.isna() | (s < 1)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0]) + 2  # 1-based, after the header
            raise ConfigError(f"{p}:{row}: column '{column}' must hold positive token counts "
                              f"(got {df[column].iloc[row - 2]!r}); fix or drop that line")
        out.append(s.to_numpy(dtype=np.int64))
    return out


def _read_column(file: str, column: str, base_dir: str | None) -> np.ndarray:
    return _read_columns(file, [column], base_dir)[0]


def _upper(spec_max: int | None, max_model_len: int | None) -> float:
    if spec_max is not None:
        return spec_max
    if max_model_len is None:
        return math.inf
    return max_model_len - 1


def make_sampler(spec: Length, axis: str, base_dir: str | None = None,
                 max_model_len: int | None = None) -> LengthSampler:
    """Sampler for one axis (``input`` or ``output``) from its config."""
    if isinstance(spec, FixedLength):
        return Fixed(spec.value)
    if isinstance(spec, UniformLength):
        return Uniform(spec.min, spec.max)
    if isinstance(spec, NormalLength | LognormalLength):
        hi = _upper(spec.max, max_model_len)
        if spec.min > hi:
            raise ConfigError(f"workload.{axis}_len: min {spec.min} > max {hi}")
        if isinstance(spec, NormalLength):
            return Normal(spec.mean, spec.std, spec.min, hi)
        try:
            return Lognormal(spec.mean, spec.cv, spec.min, hi)
        except ConfigError as e:
            raise ConfigError(f"workload.{axis}_len: {e}") from None
    if isinstance(spec, EmpiricalLength):
        return Empirical(_read_column(spec.file, spec.column, base_dir),
                         spec.order == "sequential")
    if isinstance(spec, TableLength):
        t = load_length_table(spec.name)
        return Table(t[f"{axis}_tokens"]["quantiles"], spec.max)
    raise AssertionError(spec)


# --------------------------------------------------------------------------------------------
# Pairs
# --------------------------------------------------------------------------------------------


class JointTable:
    """(input, output) pairs drawn through a table's rank grid, keeping their correlation."""

    def __init__(self, name: str, in_max: int | None, out_max: int | None) -> None:
        t = load_length_table(name)
        self.inp = Table(t["input_tokens"]["quantiles"], in_max)
        self.out = Table(t["output_tokens"]["quantiles"], out_max)
        counts = np.asarray(t["joint"]["counts"], dtype=float)
        self.bins = int(t["joint"]["bins"])
        self.cdf = np.cumsum(counts.ravel()) / counts.sum()

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        cell = np.searchsorted(self.cdf, rng.random(n), side="right")
        cell = np.minimum(cell, len(self.cdf) - 1)
        i, j = np.divmod(cell, self.bins)
        u_in = (i + rng.random(n)) / self.bins
        u_out = (j + rng.random(n)) / self.bins
        return self.inp.at(u_in), self.out.at(u_out)


class EmpiricalPairs:
    """Whole rows of one CSV (input and output columns), resampled or in file order."""

    def __init__(self, inp: np.ndarray, out: np.ndarray, sequential: bool) -> None:
        self.rows = Empirical(np.arange(len(inp)), sequential)
        self.inp, self.out = inp, out

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        idx = self.rows.sample(rng, n)
        return self.inp[idx], self.out[idx]


def spearman_to_pearson(rho_s: float) -> float:
    """Pearson correlation of a bivariate normal whose Spearman rank correlation is ``rho_s``."""
    return 2.0 * math.sin(math.pi * rho_s / 6.0)


class GaussianCopula:
    """Two marginals joined by a Gaussian copula with a target Spearman rank correlation."""

    def __init__(self, inp: LengthSampler, out: LengthSampler, rho_s: float) -> None:
        self.inp, self.out = inp, out
        self.r = spearman_to_pearson(rho_s)

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        z1 = rng.standard_normal(n)
        z2 = self.r * z1 + math.sqrt(max(0.0, 1.0 - self.r * self.r)) * rng.standard_normal(n)
        return self.inp.quantile(norm_cdf(z1)), self.out.quantile(norm_cdf(z2))


class LengthPairs:
    """Draws (input, output) length pairs for a workload, jointly where the config allows."""

    def __init__(self, input_spec: Length, output_spec: Length, base_dir: str | None,
                 correlation: float | None = None, max_model_len: int | None = None) -> None:
        self.joint: JointTable | EmpiricalPairs | GaussianCopula | None = None
        self.inp = make_sampler(input_spec, "input", base_dir, max_model_len)
        self.out = make_sampler(output_spec, "output", base_dir, max_model_len)
        if correlation is not None:
            self.joint = GaussianCopula(self.inp, self.out, correlation)
        elif (isinstance(input_spec, TableLength) and isinstance(output_spec, TableLength)
                and input_spec.name == output_spec.name):
            self.joint = JointTable(input_spec.name, input_spec.max, output_spec.max)
        elif (isinstance(input_spec, EmpiricalLength) and isinstance(output_spec, EmpiricalLength)
                and _resolve(input_spec.file, base_dir) == _resolve(output_spec.file, base_dir)):
            if input_spec.order != output_spec.order:
                raise ConfigError("workload.input_len/output_len: the same empirical file with "
                                  "different orders; give both the same order")
            inp, out = _read_columns(input_spec.file, [input_spec.column, output_spec.column],
                                     base_dir) if input_spec.column != output_spec.column else (
                2 * _read_columns(input_spec.file, [input_spec.column], base_dir))
            self.joint = EmpiricalPairs(inp, out, input_spec.order == "sequential")

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        if self.joint is not None:
            return self.joint.sample(rng, n)
        return self.inp.sample(rng, n), self.out.sample(rng, n)
