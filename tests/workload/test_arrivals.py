"""Arrival generators reproduce their target rate and inter-arrival CV (100k samples, 2 %)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulator.config import (
    DiurnalArrivals,
    GammaArrivals,
    MMPPArrivals,
    OfflineArrivals,
    OnOffArrivals,
    PoissonArrivals,
    RampArrivals,
    StepsArrivals,
    WeibullArrivals,
)
from simulator.workload.arrivals import (
    PiecewiseLinearRate,
    arrival_times,
    diurnal_profile,
    expected_rate_cv,
    weibull_shape,
)

N = 100_000


def draw(spec, n=N, seed=1, until=None) -> np.ndarray:
    return np.fromiter(arrival_times(spec, np.random.default_rng(seed), n, until), float)


def rate_cv(t: np.ndarray) -> tuple[float, float]:
    g = np.diff(t)
    return (len(t) - 1) / (t[-1] - t[0]), float(g.std() / g.mean())


@pytest.mark.parametrize("spec", [
    PoissonArrivals(rate=20),
    GammaArrivals(rate=20, cv=0.5),
    GammaArrivals(rate=20, cv=3.0),
    WeibullArrivals(rate=5, cv=0.5),
    WeibullArrivals(rate=5, cv=2.0),
    OnOffArrivals(rate_on=40, on_s=0.5, off_s=1.0),
    OnOffArrivals(rate_on=30, rate_off=5, on_s=1.0, off_s=2.0),
    MMPPArrivals(states=[{"rate": 5, "mean_s": 1.0}, {"rate": 40, "mean_s": 0.3},
                         {"rate": 0, "mean_s": 0.5}]),
], ids=lambda s: s.kind)
def test_stationary_process_hits_rate_and_cv(spec):
    want_rate, want_cv = expected_rate_cv(spec)
    assert want_rate is not None and want_cv is not None
    rate, cv = rate_cv(draw(spec))
    assert rate == pytest.approx(want_rate, rel=0.02)
    assert cv == pytest.approx(want_cv, rel=0.02)


def test_mmpp_theory_reduces_to_known_cases():
    # Equal rates in every state: a Poisson process.
    rate, cv = expected_rate_cv(MMPPArrivals(states=[{"rate": 7, "mean_s": 1}, {"rate": 7, "mean_s": 3}]))
    assert rate == pytest.approx(7) and cv == pytest.approx(1.0)
    # On/off with rate_off 0 is a hyperexponential renewal process: CV² = 1 + 2·α·λ / (α+β)².
    lam, on, off = 10.0, 2.0, 3.0
    a, b = 1 / on, 1 / off
    rate, cv = expected_rate_cv(OnOffArrivals(rate_on=lam, on_s=on, off_s=off))
    assert rate == pytest.approx(lam * on / (on + off))
    assert cv == pytest.approx(math.sqrt(1 + 2 * a * lam / (a + b) ** 2))


def test_fixed_on_off_is_a_square_wave():
    spec = OnOffArrivals(rate_on=50, on_s=2, off_s=3, periods="fixed")
    t = draw(spec, n=10**9, until=2000.0)
    phase = np.mod(t, 5.0)
    assert (phase <= 2.0 + 1e-9).all()
    assert len(t) / 2000.0 == pytest.approx(expected_rate_cv(spec)[0], rel=0.02)


def test_weibull_shape_solves_the_cv():
    for cv in (0.3, 1.0, 2.5, 8.0):
        k = weibull_shape(cv)
        got = math.sqrt(math.gamma(1 + 2 / k) / math.gamma(1 + 1 / k) ** 2 - 1)
        assert got == pytest.approx(cv, rel=1e-6)
    assert weibull_shape(1.0) == pytest.approx(1.0, rel=1e-6)


def test_piecewise_linear_inverse_is_exact():
    rng = np.random.default_rng(0)
    prof = PiecewiseLinearRate([0, 10, 10, 30, 45, 45, 60], [2, 6, 0, 0, 9, 1, 3], periodic=True)
    t = np.sort(rng.uniform(0, 500, 2000))
    lam = prof.cumulative(t)
    back = prof.inverse(lam)
    # Inside the zero-rate stretch [10, 30) Λ is flat: the inverse returns its start.
    zero = np.mod(t, 60) >= 10
    zero &= np.mod(t, 60) < 30
    assert np.allclose(back[~zero], t[~zero], atol=1e-8)
    assert np.allclose(prof.cumulative(back), lam, atol=1e-9)
    hold = PiecewiseLinearRate([0, 5, 10], [1, 3, 3], periodic=False)
    assert hold.inverse(np.array([hold.mass + 6.0]))[0] == pytest.approx(12.0)


def test_diurnal_sinusoid_follows_the_day():
    spec = DiurnalArrivals(rate=10, amplitude=0.6, peak_hour=14, period_s=3600)
    t = draw(spec, n=10**9, until=3600.0 * 8)
    assert len(t) / (3600 * 8) == pytest.approx(10, rel=0.02)
    hours = np.bincount((np.mod(t, 3600) // 150).astype(int), minlength=24) / 8 / 150
    want = 10 * (1 + 0.6 * np.cos(2 * np.pi * (np.arange(24) + 0.5 - 14) / 24))
    assert np.abs(hours - want).max() < 0.06 * 10 * 1.6
    assert int(np.argmax(hours)) in (13, 14)


def test_diurnal_table_with_start_hour():
    table = [1.0] * 12 + [3.0] * 12
    spec = DiurnalArrivals(hourly=table, period_s=24_000, start_hour=12)
    prof = diurnal_profile(spec)
    # At t = 0 it is 12:00 (value 3); 6 hours later 18:00 (3); at 01:00 (t = 13 h) it is 1.
    assert prof.rate_at(np.array([0.0]))[0] == pytest.approx(3.0)
    assert prof.rate_at(np.array([13 * 1000.0]))[0] == pytest.approx(1.0)
    assert prof.mean_rate() == pytest.approx(2.0)
    scaled = diurnal_profile(DiurnalArrivals(hourly=table, rate=6, period_s=24_000))
    assert scaled.mean_rate() == pytest.approx(6.0)


def test_renewal_on_the_profile_clock_keeps_its_cv():
    spec = DiurnalArrivals(rate=20, amplitude=0.8, period_s=600, cv=2.0)
    t = draw(spec)
    op = np.diff(diurnal_profile(spec).cumulative(t))
    assert op.std() / op.mean() == pytest.approx(2.0, rel=0.02)


def test_steps_and_ramp():
    steps = StepsArrivals(steps=[{"at_s": 0, "rate": 10}, {"at_s": 1000, "rate": 30}])
    t = draw(steps, n=10**9, until=5000.0)
    assert (t < 1000).sum() / 1000 == pytest.approx(10, rel=0.05)
    assert (t >= 1000).sum() / 4000 == pytest.approx(30, rel=0.02)
    ramp = RampArrivals(from_rate=0, to_rate=40, start_s=100, duration_s=1000)
    t = draw(ramp, n=10**9, until=3000.0)
    assert (t < 100).sum() == 0
    assert ((t >= 100) & (t < 1100)).sum() == pytest.approx(20_000, rel=0.02)
    assert (t >= 1100).sum() / 1900 == pytest.approx(40, rel=0.02)
    end = StepsArrivals(steps=[{"at_s": 0, "rate": 50}, {"at_s": 100, "rate": 0}])
    t = draw(end, n=10**9)
    assert t.max() <= 100 and len(t) == pytest.approx(5000, rel=0.05)


def test_offline_and_limits():
    assert draw(OfflineArrivals(), n=5).tolist() == [0.0] * 5
    t = draw(PoissonArrivals(rate=10), n=10**9, until=100.0)
    assert t.max() <= 100.0


@pytest.mark.parametrize("spec", [
    GammaArrivals(rate=3, cv=2), WeibullArrivals(rate=3, cv=2),
    OnOffArrivals(rate_on=5, on_s=1, off_s=1), DiurnalArrivals(rate=3, period_s=60, cv=1.5),
    RampArrivals(from_rate=1, to_rate=5, duration_s=10),
], ids=lambda s: s.kind)
def test_same_seed_same_stream(spec):
    assert (draw(spec, 2000, seed=7) == draw(spec, 2000, seed=7)).all()
    assert not (draw(spec, 2000, seed=7) == draw(spec, 2000, seed=8)).all()
