"""The cold-start pipeline: shared-storage loading (N concurrent loads take ≈ N × longer), node
acquisition (billing from acquisition, stock-outs and capacity limits bill nothing), size-class
defaults, the warm pool's wake time, scale-down draining in-flight requests, conservation and
determinism with autoscaling."""

from __future__ import annotations

import math

import pytest

from simulator import simulate
from simulator.cluster.autoscale_spec import ProvisioningConfig
from simulator.cluster.provisioning import CLASS_DEFAULTS, SharedStorage, resolve
from simulator.simenv import Environment
from simulator.workload.generator import RequestSpec
from tests.cluster.helpers import scenario, simulate_traffic, traffic

# --------------------------------------------------------------------------------------------
# Shared storage (processor sharing)
# --------------------------------------------------------------------------------------------


def _loads(starts: list[float], gb: float, total: float, cap: float | None = None
           ) -> list[float]:
    env = Environment()
    st = SharedStorage(env, total, cap)
    done: list[float] = [math.nan] * len(starts)

    def one(i: int, at: float):
        yield env.timeout(at)
        _, ev = st.fetch(gb * 1e9)
        yield ev
        done[i] = env.now

    for i, at in enumerate(starts):
        env.process(one(i, at))
    env.run()
    return done


def test_n_concurrent_loads_take_n_times_longer():
    assert _loads([0], 10, 1.0) == pytest.approx([10.0])
    for n in (2, 4, 8):
        assert _loads([0] * n, 10, 1.0) == pytest.approx([10.0 * n] * n)


def test_bandwidth_is_re_shared_when_a_load_starts_or_ends():
    # 0–5 s alone (5 GB), then two share 1 GB/s: the first ends at 15 s, the second has 5 GB
    # left and finishes alone at 20 s.
    assert _loads([0, 5], 10, 1.0) == pytest.approx([15.0, 20.0])


def test_per_load_cap():
    assert _loads([0], 10, 1.0, cap=0.5) == pytest.approx([20.0])
    assert _loads([0, 0], 10, 1.0, cap=0.5) == pytest.approx([20.0, 20.0])
    assert _loads([0] * 4, 10, 1.0, cap=0.5) == pytest.approx([40.0] * 4)


def test_size_class_defaults_are_the_published_figures():
    d8, d70 = CLASS_DEFAULTS["8b"], CLASS_DEFAULTS["70b"]
    assert (d8["load_s"], d8["compile_s"], d8["wake_s"]) == (48.0, 19.0, 2.9)
    assert (d70["load_s"], d70["compile_s"], d70["cuda_graph_s"], d70["wake_s"]) == \
        (84.0, 85.0, 60.0, 5.3)
    t = resolve(ProvisioningConfig(), 70.6, 141.0)
    assert t.load_s == 84.0 and t.weights_gb == 141.0
    t8 = resolve(ProvisioningConfig(load_s=14), 8.0, 16.0)
    assert t8.load_s == 14 and t8.compile_s == 19.0  # overridable, one field at a time


# --------------------------------------------------------------------------------------------
# In the simulation
# --------------------------------------------------------------------------------------------

QUICK = {"node_acquire_mean_s": 10, "node_acquire_cv": 0, "image_gb": 0, "load_s": 3,
         "compile_s": 2, "cuda_graph_s": 1, "warmup_s": 1, "readiness_delay_s": 3,
         "storage_gb_s": 4.0}
"""A cold start of 10 s (node) + weights (16.06 GB / share of 4 GB/s) + 10 s."""


def _prewarm(n: int, at: float = 15.0, **prov) -> dict:
    return {"autoscaling": {"timeseries_interval_s": 5, "pools": {"default": {
        "max_replicas": 16, "sync_period_s": 15,
        "signals": [{"kind": "schedule", "entries": [{"at_s": at, "replicas": 1 + n}]}]}}},
        "provisioning": {**QUICK, **prov},
        "workload": {"num_requests": None, "duration_s": 200,
                     "arrival": {"kind": "poisson", "rate": 2}}}


def test_concurrent_cold_starts_share_the_weight_storage():
    one = simulate(scenario(**_prewarm(1)))
    four = simulate(scenario(**_prewarm(4)))
    f1 = one.summary["autoscaling"]["pools"]["default"]["stage_s_mean"]["fetching"]
    f4 = four.summary["autoscaling"]["pools"]["default"]["stage_s_mean"]["fetching"]
    assert f1 == pytest.approx(16.06 / 4.0, rel=0.01)
    assert f4 / f1 == pytest.approx(4.0, rel=0.01)
    assert four.summary["autoscaling"]["max_concurrent_weight_loads"] == 4


def test_billing_starts_at_node_acquisition_not_readiness():
    res = simulate(scenario(**_prewarm(2)))
    lives = res.extra["replicas"]
    new = lives[lives["start_s"] > 0]
    assert len(new) == 2
    # Requested at the sync at 15 s, node after 10 s: billed from 25 s; ready 2 × 4.015 s of
    # weights and 10 s of load/compile/graphs/warm-up/readiness later.
    assert new["start_s"].tolist() == pytest.approx([25.0, 25.0])
    assert new["ready_s"].tolist() == pytest.approx([25.0 + 2 * 16.06 / 4 + 10] * 2, rel=1e-3)
    end = res.summary["sim"]["sim_time_s"]
    gpu_h = (end + 2 * (end - 25.0)) / 3600
    assert res.summary["cost"]["gpu_hours"] == pytest.approx(gpu_h, rel=1e-6)
    a = res.summary["autoscaling"]
    assert a["gpu_hours_not_ready"] == pytest.approx(2 * (2 * 16.06 / 4 + 10) / 3600, rel=1e-3)
    hourly = simulate(scenario(**_prewarm(2), cost={"granularity": "hour"}))
    assert hourly.summary["cost"]["gpu_hours"] == pytest.approx(3.0)  # three started hours


def test_stockout_means_no_node_and_no_bill():
    res = simulate(scenario(**_prewarm(2, stockout_probability=1.0, stockout_retry_s=30)))
    a = res.summary["autoscaling"]
    assert a["stockouts"] >= 2 and a["cold_starts"] == 0
    assert len(res.extra["replicas"]) == 1  # only the initial replica was ever billed
    assert res.summary["cost"]["gpu_hours"] == pytest.approx(res.summary["sim"]["sim_time_s"]
                                                             / 3600)


def test_node_capacity_makes_requests_wait():
    res = simulate(scenario(**_prewarm(3, node_capacity=1)))
    lives = res.extra["replicas"].sort_values("start_s")
    assert len(lives) == 2  # the one node never frees up: the other two never get one
    assert res.summary["autoscaling"]["capacity_waits"] == 2


def test_warm_pool_wakes_in_seconds_and_is_refilled():
    sc = _prewarm(1)
    sc["autoscaling"]["pools"]["default"]["warm_pool"] = {"size": 1, "wake_s": 4.0}
    res = simulate(scenario(**sc))
    lives = res.extra["replicas"]
    woken = lives[(lives["start_s"] == 0) & (lives["ready_s"] > 0)]
    assert woken["ready_s"].tolist() == pytest.approx([15.0 + 4.0])  # billed from 0, asleep
    p = res.summary["autoscaling"]["pools"]["default"]
    assert p["wakes"] == 1 and p["cold_starts"] == 1  # the refill went through the pipeline
    ts = res.extra["fleet_timeseries"]
    assert ts["sleeping"].iloc[-1] == 1


def test_scale_down_drains_in_flight_requests(monkeypatch):
    # Three replicas, long requests until 40 s, then a trickle: the HPA scales to one. Every
    # request on a drained replica finishes there; none fails or is cut.
    items = [(0.2 * i, RequestSpec(prompt_len=300, output_len=800)) for i in range(200)]
    items += [(60.0 + 5 * i, RequestSpec(prompt_len=300, output_len=800)) for i in range(60)]
    sc = scenario(fleet={"replicas": 3}, provisioning={**QUICK, "drain_timeout_s": None},
                  autoscaling={"scrape_interval_s": 5, "window_s": 10, "pools": {"default": {
                      "min_replicas": 1, "max_replicas": 3, "sync_period_s": 5,
                      "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}},
                      "signals": [{"kind": "pods", "metric": "num_requests_running",
                                   "target": 40}]}}})
    res = simulate_traffic(monkeypatch, sc, traffic(items))
    r = res.summary["requests"]
    assert r["completed"] == 260 and r["failed"] == 0 and r["in_flight"] == 0
    lives = res.extra["replicas"]
    down = lives[lives["end_reason"] == "scale_down"]
    assert len(down) >= 2
    att = res.extra["attempts"]
    busy = 0
    for _, life in down.iterrows():
        served = att[att["replica"] == life["replica"]]
        if len(served):
            busy += 1
            assert (served["outcome"] == "completed").all()
            assert served["end_s"].max() <= life["end_s"] + 1e-9
    assert busy >= 2


def test_autoscaled_run_is_deterministic_and_conserves_requests():
    sc = scenario(**_prewarm(3, node_acquire_cv=0.5, stockout_probability=0.3))
    a, b = simulate(sc), simulate(sc)
    for res in (a, b):
        r = res.summary["requests"]
        assert r["arrived"] == r["completed"] + r["rejected"] + r["timed_out"] + r["failed"] \
            + r["in_flight"]
    sa, sb = dict(a.summary), dict(b.summary)
    sa.pop("sim")
    sb.pop("sim")
    assert sa == sb
    assert a.extra["fleet_timeseries"].equals(b.extra["fleet_timeseries"])
    assert a.extra["replicas"].equals(b.extra["replicas"])


def test_cancelled_requests_give_their_capacity_back():
    sc = _prewarm(0, node_capacity=1)
    sc["autoscaling"]["pools"]["default"].update({
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}},
        "signals": [{"kind": "schedule", "entries": [
            {"at_s": 0, "replicas": 1}, {"at_s": 15, "replicas": 3}, {"at_s": 30, "replicas": 1},
            {"at_s": 100, "replicas": 2}]}]})
    res = simulate(scenario(**sc))
    lives = res.extra["replicas"].sort_values("start_s")
    # 15 s: two requested, one acquires (25 s), one waits for capacity; 30 s: both cancelled
    # (the node is released, nothing else billed); 105 s (first sync after 100): the capacity is
    # free again, a node arrives at 115 s.
    assert lives["start_s"].tolist() == pytest.approx([0.0, 25.0, 115.0])
    assert lives["end_reason"].tolist()[1] == "scale_down_before_ready"
    assert lives["end_s"].tolist()[1] == pytest.approx(30.0)
    assert res.summary["autoscaling"]["pools"]["default"]["cancelled"] == 2
