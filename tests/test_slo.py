"""SLO attainment, goodput, per-tenant breakdown and prediction intervals (simulator.metrics.summary)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from simulator import simulate
from simulator.metrics.summary import (
    interval,
    interval_summary,
    measured_requests,
    slo_summary,
    t975,
    target_check,
    tenant_summary,
)
from simulator.plan_spec import SloConfig
from simulator.run import simulate_replications
from tests.conftest import small_scenario


def frame(ttft_ms: list[float], tpot_ms: list[float] | None = None, outcome: list[str] | None = None,
          tenant: list[str] | None = None) -> pd.DataFrame:
    n = len(ttft_ms)
    df = pd.DataFrame({
        "request_id": range(n), "arrival_s": np.arange(n, dtype=float),
        "outcome": outcome or ["completed"] * n,
        "ttft_s": np.array(ttft_ms) / 1000.0,
        "tpot_s": np.array(tpot_ms if tpot_ms is not None else [10.0] * n) / 1000.0,
        "e2e_s": np.array(ttft_ms) / 1000.0 + 1.0,
        "input_tokens": 100, "output_tokens": 50,
    })
    if tenant is not None:
        df["tenant"] = tenant
    return df


def test_target_attainment_and_percentile_agree():
    df = frame([100.0 * (i + 1) for i in range(10)])  # 100 … 1000 ms
    c = target_check(df, "ttft_p90_ms", 900.0)
    assert c["attainment"] == pytest.approx(0.9) and c["met"] is True
    assert c["value_ms"] == pytest.approx(900.0)
    c = target_check(df, "ttft_p90_ms", 899.0)
    assert c["attainment"] == pytest.approx(0.8) and c["met"] is False


def test_failed_requests_count_against_the_target():
    df = frame([100.0] * 9 + [np.nan], outcome=["completed"] * 9 + ["timed_out"])
    c = target_check(df, "ttft_p90_ms", 500.0)
    assert c["attainment"] == pytest.approx(0.9) and c["met"] is True
    df = frame([100.0] * 8 + [np.nan, np.nan], outcome=["completed"] * 8 + ["rejected", "failed"])
    c = target_check(df, "ttft_p90_ms", 500.0)
    assert c["attainment"] == pytest.approx(0.8) and c["met"] is False
    assert c["value_ms"] is None  # the 90th percentile falls on a failed request


def test_requests_in_flight_at_the_end_count_only_once_they_have_missed():
    # 9 completed fast; request 9 arrived at t = 9 s and is still waiting for its first token.
    df = frame([100.0] * 9 + [np.nan], outcome=["completed"] * 9 + ["in_flight"])
    early = target_check(df, "ttft_p90_ms", 500.0, end_s=9.2)  # waited 200 ms: could still make it
    assert early["undecided"] == 1 and early["attainment"] == pytest.approx(1.0)
    late = target_check(df, "ttft_p90_ms", 500.0, end_s=10.0)  # waited 1 s: already missed
    assert late["undecided"] == 0 and late["attainment"] == pytest.approx(0.9)
    # A first token already streamed is a known TTFT; its TPOT is still undecided.
    df.loc[9, "ttft_s"] = 0.05
    assert target_check(df, "ttft_p90_ms", 500.0, end_s=10.0)["attainment"] == pytest.approx(1.0)
    assert target_check(df, "tpot_p90_ms", 50.0, end_s=100.0)["undecided"] == 1
    s = slo_summary(measured_requests(df, 0.0), SloConfig(e2e_p99_ms=5000), 10.0, end_s=100.0)
    assert s["undecided_requests"] == 0 and s["good_requests"] == 9  # waited 91 s > 5 s: missed


def test_goodput_uses_the_loosest_target_per_metric_and_all_metrics():
    df = frame([100, 200, 300, 2000], tpot_ms=[10, 10, 60, 10])
    slo = SloConfig(ttft_p50_ms=150, ttft_p99_ms=500, tpot_p90_ms=50)
    s = slo_summary(measured_requests(df, 0.0), slo, window_s=2.0)
    # Good: TTFT ≤ 500 (the loosest TTFT target) and TPOT ≤ 50 → requests 0 and 1.
    assert s["good_requests"] == 2
    assert s["goodput_rps"] == pytest.approx(1.0)
    assert s["attainment"] == pytest.approx(0.5)
    assert s["targets"]["ttft_p50_ms"]["met"] is False  # 1 of 4 ≤ 150
    assert s["met"] is False
    assert set(s["tenants"]) == {"default"}


def test_per_tenant_targets_fall_back_to_global():
    df = frame([100, 100, 400, 400], tenant=["gold", "gold", "free", "free"])
    slo = SloConfig(ttft_p90_ms=500, tenants={"gold": {"ttft_p90_ms": 200},
                                              "absent": {"ttft_p90_ms": 1}})
    s = slo_summary(measured_requests(df, 0.0), slo, window_s=1.0)
    assert s["tenants"]["gold"]["targets"]["ttft_p90_ms"]["target_ms"] == 200
    assert s["tenants"]["free"]["targets"]["ttft_p90_ms"]["target_ms"] == 500
    assert s["tenants"]["gold"]["met"] and s["tenants"]["free"]["met"]
    assert s["tenants"]["absent"]["requests"] == 0 and s["tenants"]["absent"]["met"]
    assert s["met"] is True
    t = tenant_summary(measured_requests(df, 0.0), 1.0)
    assert t["gold"]["requests"]["completed"] == 2
    assert t["free"]["ttft_ms"]["p50"] == pytest.approx(400)


def test_slo_needs_a_target():
    with pytest.raises(ValueError, match="slo sets no target"):
        SloConfig()


def test_simulated_summary_keeps_old_keys_and_adds_slo_and_tenants():
    s = simulate(small_scenario(slo={"ttft_p90_ms": 10_000, "tpot_p90_ms": 1_000})).summary
    for key in ("requests", "ttft_ms", "tpot_ms", "itl_ms", "e2e_ms", "queue_ms", "throughput",
                "kv_cache_usage", "preemptions", "prefix_cache_hit_rate", "window_s", "sim",
                "deployment", "scenario"):
        assert key in s
    assert s["slo"]["met"] is True and s["slo"]["attainment"] == pytest.approx(1.0)
    assert s["slo"]["goodput_rps"] == pytest.approx(s["throughput"]["requests_per_s"])
    assert s["tenants"]["default"]["ttft_ms"] == s["ttft_ms"]
    assert simulate(small_scenario()).summary["slo"] is None


def test_t_interval_by_hand():
    iv = interval([1.0, 2.0, 3.0])
    assert iv["mean"] == 2.0
    assert iv["hi"] - iv["mean"] == pytest.approx(4.303 / np.sqrt(3))
    assert interval([5.0]) == {"mean": 5.0, "lo": 5.0, "hi": 5.0, "n": 1}
    assert interval([1.0, None])["mean"] is None  # type: ignore[list-item]
    assert t975(1) == 12.706 and t975(120) == pytest.approx(1.98, abs=2e-3)


def test_replications_use_consecutive_seeds_and_intervals_cover_the_runs():
    runs = simulate_replications(small_scenario(seed=5, workload={"num_requests": 150}), 3)
    assert [r.summary["sim"]["seed"] for r in runs] == [5, 6, 7]
    iv = interval_summary([r.summary for r in runs])
    p90 = [r.summary["ttft_ms"]["p90"] for r in runs]
    assert iv["ttft_ms"]["p90"]["mean"] == pytest.approx(np.mean(p90))
    assert iv["ttft_ms"]["p90"]["lo"] <= min(p90) or iv["ttft_ms"]["p90"]["n"] == 3
    assert iv["deployment"]["gpu"] == "H100-SXM"
    assert iv["scenario"] == runs[0].summary["scenario"]


def test_run_command_with_replications(tmp_path):
    import json

    from typer.testing import CliRunner

    from simulator.cli import app

    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["run", "--set", "workload.num_requests=100", "--set",
                                 "slo.ttft_p90_ms=300", "--replications", "2", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "95% interval" in r.output
    rep = json.loads((out / "replications.json").read_text())
    assert rep["replications"] == 2 and rep["seeds"] == [0, 1]
    iv = rep["intervals"]["ttft_ms"]["p90"]
    assert iv["lo"] <= iv["mean"] <= iv["hi"] and iv["n"] == 2
    assert (out / "summary.json").is_file() and (out / "replicas.parquet").is_file()
