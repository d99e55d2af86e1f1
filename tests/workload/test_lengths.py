"""Length samplers reproduce their target statistics; bad CSV lines are reported by line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simulator.config import EmpiricalLength, LognormalLength, TableLength
from simulator.errors import ConfigError
from simulator.workload.arrivals import arrival_times
from simulator.workload.lengths import JointTable, load_length_table, make_sampler

N = 100_000


def test_lognormal_hits_mean_and_cv():
    s = make_sampler(LognormalLength(mean=300, cv=0.8), "input")
    x = s.sample(np.random.default_rng(1), N)
    assert x.mean() == pytest.approx(300, rel=0.02)
    assert x.std() / x.mean() == pytest.approx(0.8, rel=0.03)
    clipped = make_sampler(LognormalLength(mean=300, cv=0.8, min=10, max=500), "input")
    y = clipped.sample(np.random.default_rng(1), N)
    assert y.min() >= 10 and y.max() <= 500


def test_table_reproduces_quantiles():
    t = load_length_table("sharegpt")
    s = make_sampler(TableLength(name="sharegpt"), "input")
    x = s.sample(np.random.default_rng(2), N)
    assert np.median(x) == pytest.approx(t["input_tokens"]["p50"], rel=0.02)
    assert np.percentile(x, 99) == pytest.approx(t["input_tokens"]["p99"], rel=0.02)
    assert x.mean() == pytest.approx(t["input_tokens"]["mean"], rel=0.02)


def test_joint_table_keeps_the_correlation():
    t = load_length_table("bwb")
    inp, out = JointTable("bwb", None, None).sample(np.random.default_rng(3), N)
    ri = np.argsort(np.argsort(inp))
    ro = np.argsort(np.argsort(out))
    rho = np.corrcoef(ri, ro)[0, 1]
    assert rho == pytest.approx(t["joint"]["spearman"], abs=0.03)


def test_empirical_csv_and_bad_line(tmp_path: Path):
    p = tmp_path / "lens.csv"
    p.write_text("prompt\n10\n20\n30\n")
    s = make_sampler(EmpiricalLength(file=str(p), column="prompt"), "input")
    assert set(s.sample(np.random.default_rng(0), 1000).tolist()) == {10, 20, 30}
    p.write_text("prompt\n10\nabc\n30\n")
    with pytest.raises(ConfigError, match=r"lens.csv:3: column 'prompt'"):
        make_sampler(EmpiricalLength(file=str(p), column="prompt"), "input")


def test_poisson_rate_and_cv():
    from simulator.config import PoissonArrivals

    t = np.fromiter(arrival_times(PoissonArrivals(rate=20), np.random.default_rng(4), N, None),
                    float)
    gaps = np.diff(t)
    assert 1 / gaps.mean() == pytest.approx(20, rel=0.02)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.02)


def test_same_seed_same_stream():
    s = make_sampler(TableLength(name="azure-conv-2023"), "output")
    a = s.sample(np.random.default_rng(9), 1000)
    b = s.sample(np.random.default_rng(9), 1000)
    assert (a == b).all()
