"""`servesim run`'s console: cost, SLO, autoscaling, pools and tenants when they apply, 80 columns."""

from __future__ import annotations

from typer.testing import CliRunner

from simulator.cli import app


def _run(args: list[str], columns: int = 80) -> str:
    r = CliRunner().invoke(app, ["run", *args], env={"COLUMNS": str(columns)})
    assert r.exit_code == 0, r.output
    return r.output


def test_run_prints_cost_and_slo_at_80_columns():
    out = _run(["--set", "workload.num_requests=200", "--set", "slo.ttft_p90_ms=500",
                "--set", "slo.tpot_p90_ms=5"])
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "$3.99/h" in out and "/month" in out
    assert "per 1M tokens" in out and "input" in out and "output" in out and "idle $" in out
    assert "TTFT p90" in out and "TPOT p90" in out
    # a TPOT of ~7.6 ms cannot meet 5 ms: the SLO is reported as missed, with its goodput
    assert "SLO not met" in out and "goodput" in out
    assert "autoscaling" not in out and "pools" not in out  # a static single pool: left out


def test_columns_honoured():
    wide = _run(["--set", "workload.num_requests=50"], columns=200)
    narrow = _run(["--set", "workload.num_requests=50"], columns=60)
    assert max(len(x) for x in narrow.splitlines()) <= 60
    assert max(len(x) for x in wide.splitlines()) > 60


def test_tenants_lines_and_slo_per_tenant():
    out = _run(["scenarios/multi-tenant-fairness.yaml", "--set", "slo.ttft_p90_ms=500"])
    assert "SLO per tenant" in out
    for t in ("heavy", "light-a", "light-b", "light-c"):
        assert t in out
    assert "tenants" in out


def test_autoscaling_and_pool_lines():
    out = _run(["scenarios/cold-start-cascade.yaml"])
    assert "scale-ups" in out and "scale-downs" in out and "peak 16 replicas" in out
    assert "cold starts" in out and "mean" in out
    assert "while capacity was loading" in out
    assert "pools" in out and "timed out" in out and "$" in out


def test_loading_timeouts_counts_only_loading_intervals():
    from types import SimpleNamespace

    import pandas as pd

    from simulator.report.console import loading_timeouts

    r = SimpleNamespace(
        requests=pd.DataFrame({"outcome": ["timed_out", "timed_out", "completed"],
                               "pool": ["p", "p", "p"], "end_s": [5.0, 25.0, 6.0]}),
        extra={"fleet_timeseries": pd.DataFrame(
            {"time_s": [0.0, 10.0, 20.0, 30.0], "pool": ["p"] * 4,
             "provisioning": [1, 0, 0, 0], "waking": [0, 0, 0, 0]})})

    # 5 s falls in (0, 10] with a replica provisioning at 0 s; 25 s in (20, 30]: nothing loading
    assert loading_timeouts(r) == 1
    r.extra = {}
    assert loading_timeouts(r) is None
