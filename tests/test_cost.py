"""Cost arithmetic against hand-computed cases, and a simulated run whose cost figures must agree
with each other."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from simulator import simulate
from simulator.cluster.spec import PoolPricing
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


def test_hourly_billing_rounds_the_bill_not_the_steady_rate():
    c = cost_summary(fake_run(cost={"granularity": "hour"}))
    assert c["gpu_hours"] == pytest.approx(4.0)  # 4 GPUs × one started hour
    assert c["total_usd"] == pytest.approx(15.96)  # the run's bill: half an hour used, one paid
    assert c["bill"]["usd"] == pytest.approx(15.96)
    assert c["bill"]["rounding_usd"] == pytest.approx(15.96 / 2)
    # Before (#22): 31.92 $/h and 23,302 $/month — the partial hour charged as if it recurred.
    # The fleet keeps running: 4 GPUs × 3.99 $/h.
    assert c["usd_per_hour"] == pytest.approx(15.96)
    assert c["usd_per_month"] == pytest.approx(15.96 * 730)


def test_hourly_billing_rounding_of_released_replicas_recurs_in_the_rate():
    # Over an hour, replica 0 is held throughout; replica 1 comes for 20 minutes and is released
    # (an autoscaler's burst replica): on hourly billing each such visit costs a whole hour.
    reps = pd.DataFrame({"replica": [0, 1], "pool": "p", "gpu": "H100-SXM", "tp": 1,
                         "start_s": [0.0, 1200.0], "end_s": [3600.0, 2400.0],
                         "end_reason": ["run_end", "scale_down"]})
    c = cost_summary(fake_run(replicas=1, tp=1, sim_time_s=3600.0, window=(0.0, 3600.0),
                              extra={"replicas": reps}, cost={"granularity": "hour"}))
    assert c["total_usd"] == pytest.approx(2 * 3.99)
    assert c["usd_per_hour"] == pytest.approx(2 * 3.99)  # 1 h + (20 min billed as 1 h) per hour
    per_s = cost_summary(fake_run(replicas=1, tp=1, sim_time_s=3600.0, window=(0.0, 3600.0),
                                  extra={"replicas": reps}))
    assert per_s["usd_per_hour"] == pytest.approx(3.99 * (1 + 1 / 3))
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


# ---- issue 22: figures a planner buys on ----------------------------------------------------

def test_cost_figures_are_identical_with_step_rows_on_and_off():
    # Before (#22): without step rows the input/output split fell back to the token share.
    def cost(record: bool) -> dict[str, Any]:
        sc = small_scenario(fleet={"replicas": 2}, metrics={"record_steps": record},
                            workload={"arrival": {"kind": "poisson", "rate": 30}})
        return simulate(sc).summary["cost"]

    on, off = cost(True), cost(False)
    assert on == off
    assert 0 < on["input_share"] < 0.5
    assert on["usd_per_1m_input_tokens"] < on["usd_per_1m_output_tokens"]


def test_short_hourly_run_reports_the_bill_apart_from_the_steady_rate():
    # `servesim run --set cost.granularity=hour --set workload.num_requests=500`: one H100.
    s = simulate(small_scenario(cost={"granularity": "hour"},
                                workload={"num_requests": 500})).summary
    c = s["cost"]
    assert c["usd_per_hour"] == pytest.approx(3.99)  # before (#22): 262.3
    assert c["usd_per_month"] == pytest.approx(3.99 * 730)  # before: 191,473
    assert c["total_usd"] == pytest.approx(3.99) and c["bill"]["usd"] == pytest.approx(3.99)
    assert c["bill"]["rounding_usd"] == pytest.approx(3.99 * (1 - s["sim"]["sim_time_s"] / 3600))


POOLS_SPOT = [{"name": "od", "replicas": 2},
              {"name": "spot", "replicas": 2, "pricing": {"kind": "spot"}}]


def test_pool_pricing_prices_a_spot_pool_apart():
    s = simulate(small_scenario(fleet={"pools": POOLS_SPOT})).summary
    c = s["cost"]
    assert c["by_pool"]["od"]["usd_per_gpu_hour"] == pytest.approx(3.99)
    assert c["by_pool"]["spot"]["usd_per_gpu_hour"] == pytest.approx(2.46)
    assert c["usd_per_hour"] == pytest.approx(2 * 3.99 + 2 * 2.46)
    assert c["total_usd"] == pytest.approx((2 * 3.99 + 2 * 2.46) * s["sim"]["sim_time_s"] / 3600)
    # Both pools served (same model, same region).
    assert all(v["completed"] > 50 for v in s["fleet"]["by_pool"].values())
    own = simulate(small_scenario(fleet={"pools": [
        POOLS_SPOT[0], {**POOLS_SPOT[1], "pricing": {"usd_per_gpu_hour": 1.0}}]})).summary["cost"]
    assert own["by_pool"]["spot"]["usd_per_gpu_hour"] == 1.0


@pytest.mark.parametrize(("replicas", "rate"), [(2, 4 * 1.60), (6, 4 * 1.60 + 2 * 3.99)])
def test_reserved_commitment_is_paid_whether_used_or_not_with_on_demand_above(replicas, rate):
    pools = [{"name": "res", "replicas": replicas,
              "pricing": {"kind": "reserved", "committed_gpus": 4}}]
    s = simulate(small_scenario(fleet={"pools": pools})).summary
    c, t = s["cost"], s["sim"]["sim_time_s"]
    assert c["usd_per_hour"] == pytest.approx(rate)
    assert c["total_usd"] == pytest.approx(rate * t / 3600)
    b = c["by_pool"]["res"]
    assert b["committed_gpus"] == 4
    assert b["committed_unused_gpu_hours"] == pytest.approx(max(4 - replicas, 0) * t / 3600)


def test_pool_pricing_errors_say_what_to_fix():
    with pytest.raises(ConfigError, match=r"set pricing\.kind: reserved"):
        small_scenario(fleet={"pools": [{"name": "a", "pricing": {"committed_gpus": 2}}]})
    with pytest.raises(ConfigError, match=r"set pricing\.committed_gpus"):
        small_scenario(fleet={"pools": [{"name": "a", "pricing": {
            "kind": "reserved", "overflow_usd_per_gpu_hour": 3.0}}]})


def test_utilisation_tells_a_trickle_from_a_full_replica():
    # Before (#22): "busy" = ≥ 1 request running, so a trickle looked 100 % used.
    light = simulate(small_scenario(workload={"arrival": {"kind": "poisson", "rate": 2},
                                              "num_requests": 100})).summary["cost"]
    full = simulate(small_scenario(workload={"arrival": {"kind": "poisson", "rate": 400},
                                             "num_requests": 3000})).summary["cost"]
    ul, uf = light["utilisation"], full["utilisation"]
    assert ul["step_time_frac"] > 0.8 and uf["step_time_frac"] > 0.99
    assert ul["capacity_frac"] < 0.05
    assert 0.75 < uf["capacity_frac"] < 1.1
    assert full["by_pool"]["default"]["capacity_tokens_per_s"] > 0


def test_cost_timeseries_prices_pools_and_commitments_as_the_bill_does():
    reps = pd.DataFrame({"replica": [0, 1, 2], "pool": ["res", "res", "spot"],
                         "gpu": "H100-SXM", "tp": 1, "start_s": [0.0, 1800.0, 0.0],
                         "end_s": [3600.0, 3600.0, 3600.0]})
    pools = [SimpleNamespace(name="res", pricing=PoolPricing(kind="reserved", committed_gpus=1)),
             SimpleNamespace(name="spot", pricing=PoolPricing(kind="spot"))]
    ts = cost_timeseries(reps, CostConfig(), 3600.0, step_s=600.0, pools=pools).set_index("time_s")
    # Reserved: 1 GPU at 1.60 all along, the second (from 30 min) at on-demand 3.99; spot 2.46.
    assert ts.loc[600.0, "usd_per_hour"] == pytest.approx(1.60 + 2.46)
    assert ts.loc[2400.0, "usd_per_hour"] == pytest.approx(1.60 + 3.99 + 2.46)
    assert ts.loc[3600.0, "cumulative_usd"] == pytest.approx(1.60 + 0.5 * 3.99 + 2.46)
