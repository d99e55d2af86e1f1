"""Cost arithmetic against hand-computed cases, and a simulated run whose cost figures must agree
with each other."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from simulator import simulate
from simulator.config import scenario_from_dict
from simulator.cost import billed_seconds, cost_summary, cost_timeseries, gpu_price, static_replicas
from simulator.errors import ConfigError
from simulator.plan_spec import CostConfig
from tests.conftest import small_scenario


def fake_run(*, replicas: int = 2, tp: int = 2, gpu: str = "H100-SXM", sim_time_s: float = 1800.0,
             window: tuple[float, float] = (0.0, 1800.0), cost: dict[str, Any] | None = None,
             steps: pd.DataFrame | None = None, extra: dict[str, Any] | None = None,
             busy: float = 0.6) -> Any:
    """A stand-in for Results with exactly what the cost model reads."""
    sc = scenario_from_dict({"fleet": {"gpu": gpu, "tp": tp, "replicas": replicas},
                             "cost": cost or {}})
    summary = {
        "sim": {"sim_time_s": sim_time_s, "replica_busy_frac": busy},
        "window_s": {"start": window[0], "end": window[1]},
        "throughput": {"requests_per_s": 2.0, "input_tokens_per_s": 1000.0,
                       "output_tokens_per_s": 500.0},
        "kv_cache_usage": {"mean": 0.3, "max": 0.8},
    }
    if steps is None:
        # 1 s of a 100-token prefill step and 3 s of a 10-seq decode step: a quarter of the GPU
        # time is prefill.
        steps = pd.DataFrame({"duration_s": [1.0, 3.0], "num_tokens": [100, 10],
                              "num_prefill_tokens": [100, 0]})
    dep = SimpleNamespace(gpu=SimpleNamespace(name=gpu), tp=tp)
    return SimpleNamespace(scenario=sc, deployment=dep, summary=summary, steps=steps,
                           extra=extra or {})


def test_static_fleet_by_hand():
    c = cost_summary(fake_run(), goodput_rps=1.5)
    # 2 replicas × tp 2 = 4 H100s at the default on-demand quote (3.99 $/GPU-h) for half an hour.
    assert c["usd_per_gpu_hour"] == {"H100-SXM": 3.99}
    assert c["gpus"] == 4
    assert c["gpu_hours"] == pytest.approx(2.0)
    assert c["total_usd"] == pytest.approx(7.98)
    assert c["usd_per_hour"] == pytest.approx(15.96)
    assert c["usd_per_month"] == pytest.approx(15.96 * 730)
    assert c["input_share"] == pytest.approx(0.25)
    # $/s = 15.96 / 3600; a quarter goes to 1000 input tokens/s, three quarters to 500 output/s.
    assert c["usd_per_1m_input_tokens"] == pytest.approx(15.96 / 3600 * 0.25 / 1000 * 1e6)
    assert c["usd_per_1m_output_tokens"] == pytest.approx(15.96 / 3600 * 0.75 / 500 * 1e6)
    assert c["usd_per_1m_tokens"] == pytest.approx(15.96 / 3600 / 1500 * 1e6)
    assert c["usd_per_1k_requests"] == pytest.approx(15.96 / 3600 / 2 * 1000)
    assert c["usd_per_good_request"] == pytest.approx(15.96 / 3600 / 1.5)
    assert c["utilisation"]["idle_usd"] == pytest.approx(7.98 * 0.4)
    assert c["by_pool"]["default"]["usd"] == pytest.approx(7.98)
    assert c["basis"].startswith("static fleet")


def test_hourly_billing_rounds_each_replica_up():
    c = cost_summary(fake_run(cost={"granularity": "hour"}))
    assert c["gpu_hours"] == pytest.approx(4.0)  # 4 GPUs × one started hour
    assert c["total_usd"] == pytest.approx(15.96)
    assert c["usd_per_hour"] == pytest.approx(31.92)  # half an hour used, a whole one paid
    assert list(billed_seconds([0, 0, 10], [0, 3600, 3610], "hour")) == [0.0, 3600.0, 3600.0]
    assert list(billed_seconds([0, 0], [1, 3601], "hour")) == [3600.0, 7200.0]


def test_no_throughput_gives_none_not_division_by_zero():
    run = fake_run()
    run.summary["throughput"] = {"requests_per_s": 0.0, "input_tokens_per_s": 0.0,
                                 "output_tokens_per_s": 0.0}
    c = cost_summary(run, goodput_rps=0.0)
    assert c["usd_per_1m_output_tokens"] is None and c["usd_per_good_request"] is None
    assert c["usd_per_hour"] == pytest.approx(15.96)


@pytest.mark.parametrize(("cfg", "want"), [
    ({}, 3.99),
    ({"pricing": "spot"}, 2.46),
    ({"pricing": "reserved"}, 1.60),
    ({"provider": "nebius"}, 3.85),
    ({"pricing": "spot", "provider": "GCP"}, 6.57),
    ({"usd_per_gpu_hour": {"H100-SXM": 2.0}, "pricing": "spot"}, 2.0),
    ({"usd_per_gpu_hour": {"h100-sxm": 2.5}}, 2.5),
])
def test_price_selection(cfg, want):
    assert gpu_price("H100-SXM", CostConfig(**cfg))[0] == pytest.approx(want)


def test_missing_price_is_a_one_line_error():
    with pytest.raises(ConfigError, match="no spot price from a provider matching 'nobody'"):
        gpu_price("H100-SXM", CostConfig(pricing="spot", provider="nobody"))
    with pytest.raises(ValueError, match="must be > 0"):
        CostConfig(usd_per_gpu_hour={"H100-SXM": 0})


def test_replica_lifetimes_bill_from_acquisition_and_mixed_gpus():
    # Replica 0 (H100) held the whole hour; replica 1 acquired at 30 min (provisioning and loading
    # included); replica 2 an H200 in another pool held 10 minutes, released before the end.
    reps = pd.DataFrame({"replica": [0, 1, 2], "pool": ["a", "a", "b"],
                         "gpu": ["H100-SXM", "H100-SXM", "H200-SXM"], "tp": [1, 1, 2],
                         "start_s": [0.0, 1800.0, 600.0], "end_s": [3600.0, None, 1200.0]})
    run = fake_run(replicas=1, tp=1, sim_time_s=3600.0, window=(1800.0, 3600.0),
                   extra={"replicas": reps})
    c = cost_summary(run)
    h100 = (1.0 + 0.5) * 3.99
    h200 = 2 * (600 / 3600) * 5.40
    assert c["total_usd"] == pytest.approx(h100 + h200)
    assert c["by_pool"]["a"]["usd"] == pytest.approx(h100)
    assert c["by_pool"]["b"]["gpu_hours"] == pytest.approx(2 * 600 / 3600)
    # Over the window [30 min, 60 min] two H100s are held: 7.98 $/h.
    assert c["usd_per_hour"] == pytest.approx(7.98)
    assert c["basis"] == "replica lifetimes"
    hourly = cost_summary(fake_run(replicas=1, tp=1, sim_time_s=3600.0, extra={"replicas": reps},
                                   cost={"granularity": "hour"}))
    assert hourly["total_usd"] == pytest.approx(2 * 3.99 + 2 * 5.40)


def test_cost_timeseries_steps_and_integrates_to_the_total():
    reps = pd.DataFrame({"replica": [0, 1], "pool": "p", "gpu": "H100-SXM", "tp": [1, 2],
                         "start_s": [0.0, 100.0], "end_s": [400.0, 300.0]})
    ts = cost_timeseries(reps, CostConfig(), 400.0, step_s=50.0)
    at = ts.set_index("time_s")
    assert at.loc[50.0, "gpus"] == 1 and at.loc[150.0, "gpus"] == 3 and at.loc[350.0, "gpus"] == 1
    assert at.loc[150.0, "usd_per_hour"] == pytest.approx(3 * 3.99)
    assert at.loc[400.0, "cumulative_usd"] == pytest.approx((400 + 2 * 200) / 3600 * 3.99)
    st = static_replicas(3, "MI300X", 2, 10.0)
    assert list(st["tp"]) == [2, 2, 2] and (st["end_s"] == 10.0).all()


def test_simulated_run_cost_is_consistent():
    sc = small_scenario(fleet={"replicas": 2, "tp": 1}, cost={"pricing": "spot"},
                        slo={"ttft_p90_ms": 500})
    s = simulate(sc).summary
    c = s["cost"]
    assert c["usd_per_hour"] == pytest.approx(2 * 2.46)
    assert c["total_usd"] == pytest.approx(2 * 2.46 * s["sim"]["sim_time_s"] / 3600)
    th = s["throughput"]
    # The input/output split adds back up to the spend rate.
    back = (c["usd_per_1m_input_tokens"] * th["input_tokens_per_s"]
            + c["usd_per_1m_output_tokens"] * th["output_tokens_per_s"]) * 3600 / 1e6
    assert back == pytest.approx(c["usd_per_hour"])
    assert c["usd_per_good_request"] == pytest.approx(
        c["usd_per_hour"] / 3600 / s["slo"]["goodput_rps"])
    assert 0 < c["input_share"] < 1
    assert c["utilisation"]["replica_busy_frac"] == s["sim"]["replica_busy_frac"]


def test_crash_gap_is_billed_but_spot_preemption_gap_is_not():
    reps = pd.DataFrame({"replica": [0, 0, 1, 1], "pool": "p", "gpu": "H100-SXM", "tp": 1,
                         "start_s": [0.0, 1200.0, 0.0, 1800.0],
                         "end_s": [600.0, 3600.0, 900.0, 3600.0],
                         "end_reason": ["crash", "run_end", "spot_preemption", "run_end"]})
    run = fake_run(replicas=2, tp=1, sim_time_s=3600.0, window=(0.0, 3600.0),
                   extra={"replicas": reps})
    c = cost_summary(run)
    # Replica 0 is held the whole hour (its crash gap 600–1200 s included); replica 1 is billed
    # 900 s before the preemption and 1800 s for its replacement.
    assert c["gpu_hours"] == pytest.approx((3600 + 900 + 1800) / 3600)
    assert c["total_usd"] == pytest.approx(c["gpu_hours"] * 3.99)
