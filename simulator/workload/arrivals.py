"""When open-loop requests (or session starts) arrive.

What this models: the arrival processes of load generators and of real traffic that does not wait
for responses.

* **Poisson** — exponential gaps (vLLM benchmark's ``--request-rate``).
* **Renewal with a CV** — Gamma or Weibull gaps with a given mean rate and coefficient of variation:
  the simplest knob for burstiness (cv > 1 bursty, < 1 smoother than Poisson).
* **On/off and Markov-modulated** — the rate jumps between states (bursts and pauses), each visit
  an exponential time (or fixed on/off periods: a square wave).
* **Time-varying rate** — a daily profile (sinusoid or a piecewise-linear 24-hour table), steps and
  ramps (autoscaling what-ifs), a real trace's per-minute profile (``fitted``). These are one
  mechanism: a unit-rate renewal process (Gamma gaps of the chosen CV; cv = 1 is Poisson) run on
  the clock Λ(t) = ∫ rate, i.e. t_i = Λ⁻¹(τ_i). Λ of a piecewise-linear rate is piecewise quadratic
  and is inverted exactly, so the number of arrivals in any window has the profile's mean.
* **Offline** — everything at t = 0.

Closed-loop clients, whose next request depends on the previous response, are SimPy processes in
:mod:`simulator.cluster.client`; trace replay is :mod:`simulator.workload.traces`. Times are drawn
in chunks from the stream's own generator, so a stream is identical whatever consumes it.

Leaves out: self-exciting (Hawkes) processes, correlated gaps in renewal processes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np

from simulator.workload.shipped import load_shipped
from simulator.workload.spec import (
    Arrivals,
    DiurnalArrivals,
    FittedArrivals,
    GammaArrivals,
    MMPPArrivals,
    OfflineArrivals,
    OnOffArrivals,
    PoissonArrivals,
    RampArrivals,
    StepsArrivals,
    WeibullArrivals,
)

CHUNK = 4096
SINUSOID_KNOTS = 288
"""Knots per day of the piecewise-linear sinusoid (every 5 minutes of the day): its mean is exact,
its shape within 0.015 % of the sinusoid's amplitude."""


class ArrivalProcess(Protocol):
    def times(self, rng: np.random.Generator) -> Iterator[float]:
        """Absolute arrival times, increasing (endless unless the rate drops to 0 for good)."""
        ...


# --------------------------------------------------------------------------------------------
# Renewal processes
# --------------------------------------------------------------------------------------------


class Poisson:
    def __init__(self, rate: float) -> None:
        self.rate = rate

    def times(self, rng: np.random.Generator) -> Iterator[float]:
        t = 0.0
        while True:
            gaps = rng.exponential(1.0 / self.rate, CHUNK)
            for g in gaps:
                t += float(g)
                yield t


def weibull_shape(cv: float) -> float:
    """Weibull shape k whose coefficient of variation is ``cv`` (bisection on log k)."""
    target = math.log1p(cv * cv)

    def log_ratio(k: float) -> float:  # log(Γ(1+2/k) / Γ(1+1/k)²) = log(1 + cv²)
        return math.lgamma(1 + 2 / k) - 2 * math.lgamma(1 + 1 / k)

    lo, hi = math.log(0.01), math.log(200.0)
    for _ in range(200):
        mid = (lo + hi) / 2
        if log_ratio(math.exp(mid)) > target:  # CV decreases with k
            lo = mid
        else:
            hi = mid
    return math.exp((lo + hi) / 2)


class Renewal:
    """Gamma or Weibull gaps of mean 1/rate and a given CV."""

    def __init__(self, rate: float, cv: float, family: str) -> None:
        self.rate, self.cv, self.family = rate, cv, family
        if family == "gamma":
            self.shape = 1.0 / (cv * cv)
            self.scale = 1.0 / (rate * self.shape)
        else:
            self.shape = weibull_shape(cv)
            self.scale = 1.0 / (rate * math.gamma(1 + 1 / self.shape))

    def gaps(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.family == "gamma":
            return rng.gamma(self.shape, self.scale, n)
        return self.scale * rng.weibull(self.shape, n)

    def times(self, rng: np.random.Generator) -> Iterator[float]:
        t = 0.0
        while True:
            c = t + np.cumsum(self.gaps(rng, CHUNK))
            t = float(c[-1])
            yield from c.tolist()


# --------------------------------------------------------------------------------------------
# Markov-modulated Poisson (and on/off)
# --------------------------------------------------------------------------------------------


class Modulated:
    """Poisson whose rate follows a sequence of periods: Markov states with exponential visits, or
    a fixed on/off cycle."""

    def __init__(self, rates: list[float], means: list[float], jumps: np.ndarray | None,
                 fixed: bool = False) -> None:
        self.rates, self.means, self.fixed = rates, means, fixed
        n = len(rates)
        if jumps is None:
            jumps = (np.ones((n, n)) - np.eye(n)) / (n - 1)
        self.jumps = np.cumsum(jumps, axis=1)

    def times(self, rng: np.random.Generator) -> Iterator[float]:
        t, state = 0.0, 0
        while True:
            length = self.means[state] if self.fixed else float(rng.exponential(self.means[state]))
            rate = self.rates[state]
            if rate > 0:
                k = int(rng.poisson(rate * length))
                if k:
                    yield from (t + np.sort(rng.random(k)) * length).tolist()
            t += length
            if self.fixed:
                state = (state + 1) % len(self.rates)
            else:
                nxt = int(np.searchsorted(self.jumps[state], rng.random(), side="right"))
                state = min(nxt, len(self.rates) - 1)


def mmpp_of(spec: OnOffArrivals | MMPPArrivals) -> tuple[list[float], list[float], np.ndarray | None]:
    if isinstance(spec, OnOffArrivals):
        return [spec.rate_on, spec.rate_off], [spec.on_s, spec.off_s], None
    jumps = None if spec.transitions is None else np.asarray(spec.transitions, dtype=float)
    return [s.rate for s in spec.states], [s.mean_s for s in spec.states], jumps


def _generator(rates: list[float], means: list[float],
               jumps: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(Q, Λ) of the modulating chain: generator matrix and diagonal rate matrix."""
    n = len(rates)
    p = (np.ones((n, n)) - np.eye(n)) / (n - 1) if jumps is None else jumps
    q = p / np.asarray(means)[:, None]
    q = q - np.diag(q.sum(axis=1))
    return q, np.diag(rates)


def _stationary(q: np.ndarray) -> np.ndarray:
    n = len(q)
    a = np.vstack([q.T, np.ones(n)])
    b = np.zeros(n + 1)
    b[-1] = 1.0
    return np.linalg.lstsq(a, b, rcond=None)[0]


def mmpp_rate_cv(rates: list[float], means: list[float],
                 jumps: np.ndarray | None) -> tuple[float, float]:
    """Long-run rate and stationary inter-arrival CV of an MMPP (as a Markovian arrival process:
    D0 = Q − Λ, D1 = Λ; the gap after an arrival is phase-type with initial vector πΛ / πλ)."""
    q, lam = _generator(rates, means, jumps)
    pi = _stationary(q)
    rate = float(pi @ np.diag(lam))
    phi = (pi @ lam) / rate
    inv = np.linalg.inv(-(q - lam))
    one = np.ones(len(rates))
    m1 = float(phi @ inv @ one)
    m2 = float(2 * phi @ inv @ inv @ one)
    return rate, math.sqrt(max(0.0, m2 / (m1 * m1) - 1))


# --------------------------------------------------------------------------------------------
# Time-varying rate: renewal on the clock Λ(t)
# --------------------------------------------------------------------------------------------


class PiecewiseLinearRate:
    """A rate linear between knots (repeated knots make steps), periodic or held after the last
    knot, with its integral Λ and the exact inverse Λ⁻¹."""

    def __init__(self, t: list[float] | np.ndarray, r: list[float] | np.ndarray,
                 periodic: bool) -> None:
        self.t = np.asarray(t, dtype=float)
        self.r = np.asarray(r, dtype=float)
        if len(self.t) < 2 or self.t[0] != 0 or np.any(np.diff(self.t) < 0):
            raise ValueError("knots must start at 0 and not decrease")
        self.periodic = periodic
        self.L = np.concatenate([[0.0], np.cumsum(np.diff(self.t) * (self.r[:-1] + self.r[1:]) / 2)])
        self.period = float(self.t[-1])
        self.mass = float(self.L[-1])
        if periodic and self.mass <= 0:
            raise ValueError("the rate is 0 over the whole period")

    def mean_rate(self) -> float:
        return self.mass / self.period

    def rate_at(self, t: np.ndarray) -> np.ndarray:
        x = np.asarray(t, dtype=float)
        if self.periodic:
            x = np.mod(x, self.period)
        return np.interp(x, self.t, self.r)

    def cumulative(self, t: np.ndarray) -> np.ndarray:
        """Λ(t) = expected arrivals in [0, t]."""
        x = np.asarray(t, dtype=float)
        cycles = np.floor(x / self.period) if self.periodic else np.zeros_like(x)
        y = x - cycles * self.period
        i = np.clip(np.searchsorted(self.t, y, side="right") - 1, 0, len(self.t) - 2)
        h = np.minimum(y - self.t[i], self.t[i + 1] - self.t[i])
        seg = np.where(self.t[i + 1] > self.t[i], self.t[i + 1] - self.t[i], 1.0)
        r0, r1 = self.r[i], self.r[i + 1]
        inside = self.L[i] + r0 * h + (r1 - r0) * h * h / (2 * seg)
        tail = np.maximum(y - self.t[-1], 0.0) * self.r[-1]
        return cycles * self.mass + inside + tail

    def inverse(self, tau: np.ndarray) -> np.ndarray:
        """Λ⁻¹(τ): the time by which τ arrivals are expected (inf if never)."""
        tau = np.asarray(tau, dtype=float)
        if self.periodic:
            cycles = np.floor(tau / self.mass)
            rem = tau - cycles * self.mass
            base = cycles * self.period
        else:
            rem, base = tau, np.zeros_like(tau)
        out = np.empty_like(rem)
        over = rem >= self.mass
        if np.any(over):
            extra = rem[over] - self.mass
            if self.r[-1] > 0:
                out[over] = self.t[-1] + extra / self.r[-1]
            else:  # the rate stays 0: arrivals beyond the profile's mass never come
                out[over] = np.where(extra > 0, np.inf, self.t[-1])
        m = ~over
        if np.any(m):
            x = rem[m]
            i = np.clip(np.searchsorted(self.L, x, side="right") - 1, 0, len(self.t) - 2)
            c = x - self.L[i]
            r0, r1 = self.r[i], self.r[i + 1]
            h = self.t[i + 1] - self.t[i]
            with np.errstate(divide="ignore", invalid="ignore"):
                a = np.where(h > 0, (r1 - r0) / (2 * h), 0.0)
                disc = np.sqrt(np.maximum(r0 * r0 + 4 * a * c, 0.0))
                dx = np.where(c > 0, 2 * c / (r0 + disc), 0.0)
            out[m] = self.t[i] + np.minimum(dx, h)
        return base + out


class TimeChanged:
    """A unit-rate renewal process (Gamma gaps of CV ``cv``) run on the clock of ``profile``."""

    def __init__(self, profile: PiecewiseLinearRate, cv: float) -> None:
        self.profile, self.cv = profile, cv
        self.unit = Renewal(1.0, cv, "gamma")

    def times(self, rng: np.random.Generator) -> Iterator[float]:
        tau = 0.0
        while True:
            c = tau + np.cumsum(self.unit.gaps(rng, CHUNK))
            tau = float(c[-1])
            t = self.profile.inverse(c)
            finite = np.isfinite(t)
            yield from t[finite].tolist()
            if not finite.all():
                return


def diurnal_profile(spec: DiurnalArrivals) -> PiecewiseLinearRate:
    """The day as a periodic piecewise-linear rate in simulated seconds (time 0 = start_hour)."""
    if spec.hourly is None:
        assert spec.rate is not None
        hours = np.arange(SINUSOID_KNOTS) * 24.0 / SINUSOID_KNOTS
        values = spec.rate * (1 + spec.amplitude * np.cos(2 * np.pi * (hours - spec.peak_hour) / 24))
    else:
        values = np.asarray(spec.hourly, dtype=float)
        hours = np.arange(len(values)) * 24.0 / len(values)
        if spec.rate is not None:
            values = values * spec.rate / values.mean()
    knots = np.unique(np.concatenate([[0.0, 24.0], np.mod(hours - spec.start_hour, 24.0)]))
    r = np.interp(np.mod(knots + spec.start_hour, 24.0), hours, values, period=24.0)
    return PiecewiseLinearRate(knots / 24.0 * spec.period_s, r, periodic=True)


def steps_profile(spec: StepsArrivals) -> PiecewiseLinearRate:
    t, r = [0.0], [spec.steps[0].rate]
    for s in spec.steps[1:]:
        t += [s.at_s, s.at_s]
        r += [r[-1], s.rate]
    if len(t) == 1:
        t, r = [0.0, 1.0], [r[0], r[0]]
    return PiecewiseLinearRate(t, r, periodic=False)


def ramp_profile(spec: RampArrivals) -> PiecewiseLinearRate:
    t = [0.0, spec.start_s, spec.start_s + spec.duration_s]
    r = [spec.from_rate, spec.from_rate, spec.to_rate]
    if spec.start_s == 0:
        t, r = t[1:], r[1:]
    return PiecewiseLinearRate(t, r, periodic=False)


def load_arrival_fit(name: str) -> dict[str, Any]:
    """Read ``workloads/arrivals/<name>.yaml`` (a fitted arrival process)."""
    return load_shipped("arrivals", name, "workload.arrival", "arrival fit", ("profile", "fit"))


def fitted_profile(spec: FittedArrivals) -> tuple[PiecewiseLinearRate, float]:
    """The fitted per-interval rate profile (steps, periodic) and the CV on its clock."""
    fit = load_arrival_fit(spec.name)
    prof = fit["profile"]
    dt = float(prof["interval_s"]) / spec.time_scale
    rates = np.asarray(prof["rates"], dtype=float) * spec.time_scale
    if not spec.profile:
        rates = np.full_like(rates, rates.mean())
    if spec.rate is not None:
        rates = rates * spec.rate / rates.mean()
    t = np.repeat(np.arange(len(rates) + 1) * dt, 2)[1:-1]
    r = np.repeat(rates, 2)
    cv = spec.cv if spec.cv is not None else float(fit["fit"]["cv_on_profile_clock"])
    return PiecewiseLinearRate(t, r, periodic=True), cv


# --------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------


def make_process(spec: Arrivals) -> ArrivalProcess:
    """The open-loop process a config describes."""
    if isinstance(spec, PoissonArrivals):
        return Poisson(spec.rate)
    if isinstance(spec, GammaArrivals):
        return Renewal(spec.rate, spec.cv, "gamma")
    if isinstance(spec, WeibullArrivals):
        return Renewal(spec.rate, spec.cv, "weibull")
    if isinstance(spec, OnOffArrivals | MMPPArrivals):
        rates, means, jumps = mmpp_of(spec)
        fixed = isinstance(spec, OnOffArrivals) and spec.periods == "fixed"
        return Modulated(rates, means, jumps, fixed)
    if isinstance(spec, DiurnalArrivals):
        return TimeChanged(diurnal_profile(spec), spec.cv)
    if isinstance(spec, StepsArrivals):
        return TimeChanged(steps_profile(spec), spec.cv)
    if isinstance(spec, RampArrivals):
        return TimeChanged(ramp_profile(spec), spec.cv)
    if isinstance(spec, FittedArrivals):
        prof, cv = fitted_profile(spec)
        return TimeChanged(prof, cv)
    raise ValueError(f"{spec.kind} arrivals are not an open-loop stream")


def arrival_times(spec: Arrivals, rng: np.random.Generator, limit: int | None,
                  until: float | None) -> Iterator[float]:
    """Yield absolute arrival times, at most ``limit`` of them and none after ``until``."""
    count = 0
    if isinstance(spec, OfflineArrivals):
        while limit is None or count < limit:
            yield 0.0
            count += 1
        return
    for t in make_process(spec).times(rng):
        if until is not None and t > until:
            return
        if limit is not None and count >= limit:
            return
        yield t
        count += 1


def expected_rate_cv(spec: Arrivals) -> tuple[float | None, float | None]:
    """Long-run mean rate and stationary inter-arrival CV the process is built to have (None
    where not a single number: time-varying rates have a CV only on their own clock)."""
    if isinstance(spec, PoissonArrivals):
        return spec.rate, 1.0
    if isinstance(spec, GammaArrivals | WeibullArrivals):
        return spec.rate, spec.cv
    if isinstance(spec, OnOffArrivals | MMPPArrivals):
        rates, means, jumps = mmpp_of(spec)
        if isinstance(spec, OnOffArrivals) and spec.periods == "fixed":
            return (spec.rate_on * spec.on_s + spec.rate_off * spec.off_s) / (spec.on_s
                                                                                + spec.off_s), None
        return mmpp_rate_cv(rates, means, jumps)
    if isinstance(spec, DiurnalArrivals):
        return diurnal_profile(spec).mean_rate(), None
    if isinstance(spec, FittedArrivals):
        return fitted_profile(spec)[0].mean_rate(), None
    return None, None
