"""The cold-start cascade scenario shows what the product exists to predict: scale-up waves while
earlier replicas still load (the staircase), timeouts and retries during loading, then
over-provisioning — and a warm pool prevents it (fewer waves, fewer timeouts), asserted on the
summaries of the same traffic. Also: the mitigation table's shape, the fleet time series saved and
plotted, and static scenarios untouched by the new sections."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from simulator import load_scenario, simulate
from simulator.mitigations import VARIANTS, compare, parse_variant
from simulator.report.plots import plot_fleet_timeseries

ROOT = Path(__file__).resolve().parents[1]
CASCADE = ROOT / "scenarios" / "cold-start-cascade.yaml"


@pytest.fixture(scope="module")
def cascade():
    return simulate(load_scenario(CASCADE))


@pytest.fixture(scope="module")
def warm():
    over = [v.replace("{pool}", "default") for v in VARIANTS["warm_pool"]]
    return simulate(load_scenario(CASCADE, over))


def _conserved(s: dict) -> bool:
    r = s["requests"]
    return r["arrived"] == r["completed"] + r["rejected"] + r["timed_out"] + r["failed"] \
        + r["in_flight"]


def test_cascade_shows_the_staircase_timeouts_and_over_provisioning(cascade):
    s = cascade.summary
    assert _conserved(s)
    a = s["autoscaling"]
    assert a["scale_up_waves_while_loading"] >= 5  # waves requested while earlier ones load
    assert a["max_concurrent_weight_loads"] >= 5  # sharing the storage bandwidth
    assert s["requests"]["timed_out"] > 1000 and s["fleet"]["retries"] > 1000
    ts = cascade.extra["fleet_timeseries"]
    loading = ts[(ts["provisioning"] > 0) & (ts["ready"] <= 1)]
    assert loading["timed_out"].sum() > 0.5 * ts["timed_out"].sum()  # timeouts while loading
    # Over-provisioning: at the end, far more replicas ready than the ~2.5 the traffic needs,
    # with nothing waiting.
    last = ts.iloc[-1]
    assert last["ready"] >= 12 and last["queue"] <= 2
    assert a["cold_start_s"]["max"] > 600  # 10-minute cold starts of a 70B from shared storage


def test_warm_pool_mitigates_the_cascade(cascade, warm):
    c, w = cascade.summary, warm.summary
    assert _conserved(w)
    assert c["autoscaling"]["scale_up_waves_while_loading"] \
        > w["autoscaling"]["scale_up_waves_while_loading"]
    assert c["autoscaling"]["scale_up_events"] > w["autoscaling"]["scale_up_events"]
    assert c["requests"]["timed_out"] > w["requests"]["timed_out"]
    assert c["autoscaling"]["peak_replicas"] > w["autoscaling"]["peak_replicas"]
    assert c["ttft_ms"]["p99"] > w["ttft_ms"]["p99"]
    assert c["cost"]["total_usd"] > w["cost"]["total_usd"]


def test_fleet_timeseries_is_saved_and_plotted(cascade, tmp_path):
    ts = cascade.extra["fleet_timeseries"]
    for col in ("time_s", "pool", "desired", "provisioning", "waking", "sleeping", "ready",
                "draining", "held", "queue", "ttft_p90_s", "timed_out", "usd_per_hour"):
        assert col in ts.columns
    d = cascade.save(tmp_path / "run")
    back = pd.read_parquet(d / "fleet_timeseries.parquet")
    assert len(back) == len(ts)
    lives = pd.read_parquet(d / "replicas.parquet")
    assert (lives["ready_s"] >= lives["start_s"]).all()
    fig = plot_fleet_timeseries(ts)
    assert len(fig.axes) >= 3
    fig.savefig(tmp_path / "fleet.png")
    assert (tmp_path / "fleet.png").stat().st_size > 10_000


def test_mitigation_table_from_the_python_api():
    short = ["workload.duration_s=150"]
    df = compare(CASCADE, {"baseline": [], "more_min": parse_variant(
        "more_min=autoscaling.pools.{pool}.min_replicas=3")[1]}, overrides=short)
    assert df["variant"].tolist() == ["baseline", "more_min"]
    for col in ("ttft_p99_s", "timed_out", "peak_replicas", "total_usd", "usd_per_hour"):
        assert col in df.columns
    base, more = df.iloc[0], df.iloc[1]
    assert more["usd_per_hour"] > 0 and base["ttft_p99_s"] > more["ttft_p99_s"]


def test_static_scenarios_have_no_autoscaling_outputs():
    res = simulate(load_scenario(ROOT / "scenarios" / "default.yaml",
                                 ["workload.num_requests=50"]))
    assert "autoscaling" not in res.summary and "fleet_timeseries" not in res.extra
