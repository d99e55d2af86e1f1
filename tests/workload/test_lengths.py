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


# ---- more kinds, clipping, joint draws --------------------------------------------------------

from simulator.config import FixedLength, NormalLength  # noqa: E402
from simulator.workload.lengths import LengthPairs, norm_cdf, norm_ppf  # noqa: E402


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a))
    rb = np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def test_normal_hits_mean_and_std():
    x = make_sampler(NormalLength(mean=1000, std=200), "input").sample(np.random.default_rng(5), N)
    assert x.mean() == pytest.approx(1000, rel=0.02)
    assert x.std() == pytest.approx(200, rel=0.02)
    assert np.median(x) == pytest.approx(1000, rel=0.02)
    assert np.percentile(x, 99) == pytest.approx(1000 + 2.3263 * 200, rel=0.02)


def test_lognormal_quantiles():
    mean, cv = 500.0, 1.5
    sigma = np.sqrt(np.log1p(cv * cv))
    mu = np.log(mean) - sigma**2 / 2
    x = make_sampler(LognormalLength(mean=mean, cv=cv), "input").sample(np.random.default_rng(6), N)
    assert np.median(x) == pytest.approx(np.exp(mu), rel=0.02)
    assert np.percentile(x, 99) == pytest.approx(np.exp(mu + 2.3263 * sigma), rel=0.02)


def test_unset_max_clips_to_max_model_len():
    s = make_sampler(LognormalLength(mean=4000, cv=2), "input", max_model_len=4096)
    x = s.sample(np.random.default_rng(0), N)
    assert x.max() == 4095  # a prompt leaves room for one output token
    s = make_sampler(NormalLength(mean=5000, std=10), "output", max_model_len=2048)
    assert s.sample(np.random.default_rng(0), 10).max() == 2047
    explicit = make_sampler(LognormalLength(mean=4000, cv=2, max=100_000), "input",
                            max_model_len=4096)
    assert explicit.sample(np.random.default_rng(0), N).max() > 4096


def test_normal_helpers():
    u = np.array([1e-10, 0.001, 0.02425, 0.3, 0.5, 0.9, 0.999, 1 - 1e-10])
    z = norm_ppf(u)
    assert z[4] == pytest.approx(0.0, abs=1e-9)
    assert z[5] == pytest.approx(1.2815515655, rel=1e-8)
    assert np.allclose(norm_cdf(z), u, atol=2e-7)


@pytest.mark.parametrize("rho", [-0.4, 0.3, 0.8])
def test_copula_keeps_marginals_and_imposes_the_rank_correlation(rho):
    t = load_length_table("sharegpt")
    pairs = LengthPairs(TableLength(name="sharegpt"), LognormalLength(mean=300, cv=1.0), None,
                        correlation=rho)
    inp, out = pairs.sample(np.random.default_rng(11), N)
    assert _spearman(inp, out) == pytest.approx(rho, abs=0.02)
    assert inp.mean() == pytest.approx(t["input_tokens"]["mean"], rel=0.02)
    assert np.median(inp) == pytest.approx(t["input_tokens"]["p50"], rel=0.02)
    assert np.percentile(inp, 99) == pytest.approx(t["input_tokens"]["p99"], rel=0.02)
    assert out.mean() == pytest.approx(300, rel=0.02)


@pytest.mark.parametrize("name", ["sharegpt", "arxiv-summarization", "bwb", "azure-conv-2023",
                                  "mooncake-conversation"])
def test_named_tables_joint_draw(name):
    t = load_length_table(name)
    pairs = LengthPairs(TableLength(name=name), TableLength(name=name), None)
    inp, out = pairs.sample(np.random.default_rng(12), N)
    for x, side in ((inp, "input_tokens"), (out, "output_tokens")):
        m = t[side]
        assert x.mean() == pytest.approx(m["mean"], rel=0.02), side
        assert np.median(x) == pytest.approx(m["p50"], rel=0.02, abs=1), side
        assert np.percentile(x, 99) == pytest.approx(m["p99"], rel=0.02), side
    assert _spearman(inp, out) == pytest.approx(t["joint"]["spearman"], abs=0.03)


def test_empirical_rows_stay_paired_and_sequential_order(tmp_path: Path):
    p = tmp_path / "bench.csv"
    p.write_text("in,out\n10,1\n20,2\n30,3\n")
    seq = LengthPairs(EmpiricalLength(file=str(p), column="in", order="sequential"),
                      EmpiricalLength(file=str(p), column="out", order="sequential"), None)
    inp, out = seq.sample(np.random.default_rng(0), 7)
    assert inp.tolist() == [10, 20, 30, 10, 20, 30, 10] and (out * 10 == inp).all()
    rnd = LengthPairs(EmpiricalLength(file="bench.csv", column="in"),
                      EmpiricalLength(file="bench.csv", column="out"), str(tmp_path))
    inp, out = rnd.sample(np.random.default_rng(0), 1000)
    assert (out * 10 == inp).all() and set(inp.tolist()) == {10, 20, 30}
    fixed = LengthPairs(FixedLength(value=5), FixedLength(value=7), None, correlation=0.5)
    inp, out = fixed.sample(np.random.default_rng(0), 10)
    assert (inp == 5).all() and (out == 7).all()


@pytest.mark.parametrize("mean,cv,lo,hi", [(215, 1.13, 4, 1024), (197, 0.88, 1, 512),
                                           (1399.0297, 22.4, 1, 32768), (600, 1.0, 64, 4096)])
def test_lognormal_mean_is_the_mean_after_clipping(mean: float, cv: float, lo: int, hi: int):
    from simulator.workload.lengths import Lognormal

    x = make_sampler(LognormalLength(mean=mean, cv=cv, min=lo, max=hi), "input").sample(
        np.random.default_rng(3), 400_000)
    assert x.min() >= lo and x.max() <= hi
    # the draws are rounded to whole tokens (≤ 0.5 token of bias) and sampled (≤ 1 % here)
    assert x.mean() == pytest.approx(mean, rel=0.01 if cv > 5 else 0.003)
    # what the old parameterisation (mean before clipping) gave instead, for the default prompt
    if (mean, hi) == (215, 1024):
        s = Lognormal(mean, cv, lo, hi)
        old_mu = np.log(mean) - s.sigma**2 / 2
        assert s.mu > old_mu


def test_lognormal_far_clip_keeps_the_unclipped_location():
    from simulator.workload.lengths import Lognormal

    s = Lognormal(215, 1.13, 1, 131071)
    assert s.mu == np.log(215) - s.sigma**2 / 2  # draws bit-identical to the unclipped fit


def test_lognormal_mean_outside_the_clip_is_refused():
    with pytest.raises(ConfigError, match=r"workload.output_len: lognormal mean 600 must lie "
                                          r"strictly between min 1 and max 512"):
        make_sampler(LognormalLength(mean=600, cv=1.0, max=512), "output")
