"""Prompt and output lengths: fixed, lognormal, empirical (a user's CSV column) and shipped tables.

What this models: the token-length mix of real traffic. Shipped tables (``workloads/lengths/``) are
derived statistics of real datasets — 201-point quantile functions per axis plus a 20×20 rank grid
(an empirical copula) — so a fresh machine can draw ShareGPT-, arXiv- or Azure-like lengths without
the raw traces. Sampling a table is inverse-CDF through the piecewise-linear quantile function;
a joint (input, output) draw first picks a grid cell in proportion to its count, then a uniform
point inside it, which keeps the rank correlation between prompt and output lengths.

Leaves out: tokenizer differences between the source data and the simulated model (the tables say
which tokenizer they were counted with).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import yaml

from simulator.config import (
    EmpiricalLength,
    FixedLength,
    Length,
    LognormalLength,
    TableLength,
)
from simulator.errors import ConfigError
from simulator.profiles import data_root


class LengthSampler(Protocol):
    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` integer lengths (int64, ≥ 1)."""
        ...


class Fixed:
    def __init__(self, value: int) -> None:
        self.value = value

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.full(n, self.value, dtype=np.int64)


class Lognormal:
    """Lognormal with the given mean and CV (of the unclipped distribution), clipped."""

    def __init__(self, mean: float, cv: float, lo: int, hi: int) -> None:
        self.sigma = float(np.sqrt(np.log1p(cv * cv)))
        self.mu = float(np.log(mean) - self.sigma**2 / 2)
        self.lo, self.hi = lo, hi

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        x = rng.lognormal(self.mu, self.sigma, n)
        return np.clip(np.rint(x), self.lo, self.hi).astype(np.int64)


class Empirical:
    """Resample (with replacement) the values of a CSV column."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.values[rng.integers(0, len(self.values), n)]


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

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.at(rng.random(n))


@functools.cache
def load_length_table(name: str) -> dict[str, Any]:
    """Read ``workloads/lengths/<name>.yaml``."""
    path = data_root("workloads") / "lengths" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"workload.input_len/output_len: unknown length table '{name}'; "
                          f"known: {', '.join(known)}")
    with path.open() as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict) or "input_tokens" not in data:
        raise ConfigError(f"{path}: not a length table (needs input_tokens/output_tokens)")
    return data


def _read_column(file: str, column: str, base_dir: str | None) -> np.ndarray:
    p = Path(file)
    if not p.is_absolute() and base_dir:
        p = Path(base_dir) / p
    try:
        df = pd.read_csv(p, usecols=[column])
    except FileNotFoundError:
        raise ConfigError(f"workload: empirical length file {p} not found") from None
    except ValueError:
        raise ConfigError(f"{p}: no column '{column}' (workload …len.column)") from None
    s = pd.to_numeric(df[column], errors="coerce")
    bad = s.isna() | (s < 1)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0]) + 2  # 1-based, after the header
        raise ConfigError(f"{p}:{row}: column '{column}' must hold positive token counts "
                          f"(got {df[column].iloc[row - 2]!r}); fix or drop that line")
    return s.to_numpy(dtype=np.int64)


def make_sampler(spec: Length, axis: str, base_dir: str | None = None) -> LengthSampler:
    """Sampler for one axis (``input`` or ``output``) from its config."""
    if isinstance(spec, FixedLength):
        return Fixed(spec.value)
    if isinstance(spec, LognormalLength):
        if spec.min > spec.max:
            raise ConfigError(f"workload.{axis}_len: min {spec.min} > max {spec.max}")
        return Lognormal(spec.mean, spec.cv, spec.min, spec.max)
    if isinstance(spec, EmpiricalLength):
        return Empirical(_read_column(spec.file, spec.column, base_dir))
    if isinstance(spec, TableLength):
        t = load_length_table(spec.name)
        return Table(t[f"{axis}_tokens"]["quantiles"], spec.max)
    raise AssertionError(spec)


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


class LengthPairs:
    """Draws (input, output) length pairs for a workload, jointly where the config allows."""

    def __init__(self, input_spec: Length, output_spec: Length, base_dir: str | None) -> None:
        self.joint: JointTable | None = None
        if (isinstance(input_spec, TableLength) and isinstance(output_spec, TableLength)
                and input_spec.name == output_spec.name):
            self.joint = JointTable(input_spec.name, input_spec.max, output_spec.max)
        self.inp = make_sampler(input_spec, "input", base_dir)
        self.out = make_sampler(output_spec, "output", base_dir)

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        if self.joint is not None:
            return self.joint.sample(rng, n)
        return self.inp.sample(rng, n), self.out.sample(rng, n)
