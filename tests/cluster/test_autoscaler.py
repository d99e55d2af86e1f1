"""The autoscaler: HPA arithmetic against hand-computed examples (tolerance, missing metrics,
min/max, rate policies Pods/Percent with selectPolicy Max/Min/Disabled, stabilization windows),
stabilization suppressing flapping, the KEDA queue scaler's activation and scale to zero, and the
metrics pipeline's staleness (the autoscaler acts on scraped, averaged data)."""

from __future__ import annotations

import pytest

from simulator.cluster.autoscale_spec import HpaBehavior, PoolAutoscaling
from simulator.cluster.autoscaler import (
    POLICIES,
    HpaBehaviorState,
    external_replicas,
    hpa_replicas,
)
from simulator.errors import ConfigError
from simulator.workload.generator import RequestSpec
from tests.cluster.helpers import scenario, simulate_traffic, traffic

# --------------------------------------------------------------------------------------------
# HPA arithmetic (desired = ceil(current × metric / target))
# --------------------------------------------------------------------------------------------


def test_hpa_replicas_hand_computed():
    # 3 replicas averaging 10 waiting, target 5: ratio 2 → ceil(3 × 2) = 6.
    assert hpa_replicas(3, [10, 10, 10], 0, 5) == 6
    # ratio 7/5 = 1.4 on 2 replicas → ceil(2.8) = 3.
    assert hpa_replicas(2, [6, 8], 0, 5) == 3
    # ratio 0.25 on 4 replicas → ceil(1.0) = 1.
    assert hpa_replicas(4, [1, 1, 1, 1], 0, 4) == 1


def test_hpa_tolerance_band():
    assert hpa_replicas(2, [5.4, 5.4], 0, 5) == 2  # ratio 1.08: within 10 %
    assert hpa_replicas(2, [4.6, 4.6], 0, 5) == 2  # ratio 0.92: within 10 %
    assert hpa_replicas(2, [5.6, 5.6], 0, 5) == 3  # ratio 1.12 → ceil(2.24)
    assert hpa_replicas(2, [5.6, 5.6], 0, 5, tolerance=0.2) == 2


def test_hpa_missing_metrics_of_loading_replicas():
    # Scale-up: 1 reporting replica with 40 waiting, 3 still loading (missing, count as 0):
    # ratio 40 / (4 × 4) = 2.5 → ceil(2.5 × 4) = 10.
    assert hpa_replicas(4, [40], 3, 4) == 10
    # 12 waiting: alone the ratio is 3, with the missing as 0 it is 12/16 = 0.75 → the
    # direction flips: no change.
    assert hpa_replicas(4, [12], 3, 4) == 4
    # Scale-down: the missing count as exactly the target: (0 + 0 + 4 + 4) / 16 = 0.5 → 2.
    assert hpa_replicas(4, [0, 0], 2, 4) == 2
    assert hpa_replicas(5, [], 5, 4) == 5  # no metrics at all: no change


def test_external_metric_for_the_queue_scaler():
    assert external_replicas(2, 30, 5) == 6
    assert external_replicas(6, 31, 5) == 6  # 31 / 30 within tolerance
    assert external_replicas(0, 1, 5) == 1


def _hpa(behavior: dict | None = None, lo: int = 1, hi: int = 100) -> HpaBehaviorState:
    return HpaBehaviorState(HpaBehavior.model_validate(behavior or {}), lo, hi)


def test_default_behavior_rate_limits_scale_up():
    h = _hpa()
    # Kubernetes default: 4 Pods or 100 Percent per 15 s, whichever is more.
    assert h.normalize(0, 1, 20) == 5  # max(1 + 4, ceil(1 × 2))
    h.record(0, 1, 5)
    assert h.normalize(10, 5, 20) == 5  # within the 15 s period: 5 was the period's start + 4
    assert h.normalize(15, 5, 20) == 10  # new period: max(5 + 4, 5 × 2)
    h.record(15, 5, 10)
    assert h.normalize(30, 10, 100) == 20


@pytest.mark.parametrize(("select", "want"), [("Max", 20), ("Min", 14), ("Disabled", 10)])
def test_select_policy_scale_up(select, want):
    h = _hpa({"scaleUp": {"selectPolicy": select, "policies": [
        {"type": "Pods", "value": 4, "periodSeconds": 60},
        {"type": "Percent", "value": 100, "periodSeconds": 60}]}})
    assert h.normalize(0, 10, 50) == want


@pytest.mark.parametrize(("select", "want"), [("Max", 5), ("Min", 7), ("Disabled", 10)])
def test_select_policy_scale_down(select, want):
    h = _hpa({"scaleDown": {"stabilizationWindowSeconds": 0, "selectPolicy": select, "policies": [
        {"type": "Pods", "value": 3, "periodSeconds": 60},
        {"type": "Percent", "value": 50, "periodSeconds": 60}]}})
    # Max (the biggest change): min(10 − 3, int(10 × 0.5)) = 5; Min: max(7, 5) = 7.
    assert h.normalize(0, 10, 1) == want


def test_pods_policy_counts_changes_within_its_period():
    h = _hpa({"scaleUp": {"policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}]}})
    assert h.normalize(0, 1, 10) == 3
    h.record(0, 1, 3)
    assert h.normalize(30, 3, 10) == 3  # the period started at 1: 1 + 2 = 3 already
    assert h.normalize(61, 3, 10) == 5


def test_percent_scale_down_rounds_down_and_min_max_clamp():
    h = _hpa({"scaleDown": {"stabilizationWindowSeconds": 0, "policies": [
        {"type": "Percent", "value": 10, "periodSeconds": 60}]}}, lo=2, hi=8)
    assert h.normalize(0, 7, 1) == 6  # int(7 × 0.9) = 6
    assert h.normalize(0, 3, 50) == 7  # default up: max(3 + 4 Pods, 3 × 2) = 7 ≤ max 8
    assert h.normalize(0, 8, 50) == 8  # max
    h2 = _hpa({"scaleDown": {"stabilizationWindowSeconds": 0}}, lo=2, hi=8)
    assert h2.normalize(0, 5, 0) == 2  # min


def test_scale_down_stabilization_window_keeps_the_highest_recommendation():
    h = _hpa()  # default scale-down window: 300 s
    assert h.normalize(0, 10, 10) == 10
    assert h.normalize(15, 10, 2) == 10  # the 10 of t = 0 is inside the window
    for t in range(30, 300, 15):
        assert h.normalize(t, 10, 2) == 10
    assert h.normalize(301, 10, 2) == 2  # the 10 has left the window


def test_scale_up_stabilization_window_keeps_the_lowest_recommendation():
    h = _hpa({"scaleUp": {"stabilizationWindowSeconds": 60}})
    assert h.normalize(0, 2, 2) == 2
    assert h.normalize(15, 2, 8) == 2  # the 2 of t = 0 is inside the window
    assert h.normalize(45, 2, 8) == 2
    assert h.normalize(61, 2, 8) == 6  # only 8s in the window; rate: max(2 + 4, 2 × 2)


def test_stabilization_suppresses_flapping():
    raw = [2, 8] * 20

    def changes(h: HpaBehaviorState) -> list[int]:
        cur, out = 2, []
        for i, want in enumerate(raw):
            t = 15.0 * i
            new = h.normalize(t, cur, want)
            if new != cur:
                h.record(t, cur, new)
                out.append(new - cur)
            cur = new
        return out

    flappy = changes(_hpa({"scaleDown": {"stabilizationWindowSeconds": 0}}))
    steady = changes(_hpa())  # default 300 s scale-down window
    assert len(flappy) >= 30 and sum(d < 0 for d in flappy) >= 15
    # Up to 8 (2 → 6 → 8 under the rate policy), never down again while the spikes recur.
    assert steady == [4, 2]


def test_policy_mapping_and_config_checks():
    assert set(POLICIES) == {"pods", "queue", "schedule", "forecast"}
    with pytest.raises(ValueError, match="scale to zero"):
        PoolAutoscaling.model_validate({"min_replicas": 0, "signals": [
            {"kind": "pods", "target": 4}]})
    with pytest.raises(ValueError, match="exceeds max_replicas"):
        PoolAutoscaling.model_validate({"min_replicas": 5, "max_replicas": 2, "signals": [
            {"kind": "pods", "target": 4}]})
    with pytest.raises(ConfigError, match="no pool"):
        from simulator import simulate

        simulate(scenario(autoscaling={"pools": {"nope": {"signals": [
            {"kind": "pods", "target": 4}]}}}))


# --------------------------------------------------------------------------------------------
# In the simulation
# --------------------------------------------------------------------------------------------

FAST_START = {"node_acquire_mean_s": 5, "node_acquire_cv": 0, "image_gb": 0,
              "weights_cached_on_node": True, "load_s": 2, "compile_s": 0, "cuda_graph_s": 0,
              "warmup_s": 0, "readiness_delay_s": 0}


def _spec(out: int = 50) -> RequestSpec:
    return RequestSpec(prompt_len=200, output_len=out)


def test_keda_scales_to_zero_then_activates_on_a_held_request(monkeypatch):
    items = [(0.5 * i, _spec()) for i in range(20)] + [(600.0, _spec())]
    sc = scenario(
        autoscaling={"scrape_interval_s": 5, "window_s": 10, "timeseries_interval_s": 5,
                     "pools": {"default": {
                         "min_replicas": 0, "max_replicas": 2, "sync_period_s": 5,
                         "signals": [{"kind": "queue", "target": 4, "activation_threshold": 0,
                                      "cooldown_period_s": 60}]}}},
        provisioning=FAST_START)
    res = simulate_traffic(monkeypatch, sc, traffic(items))
    r = res.summary["requests"]
    assert r["completed"] == 21 and r["rejected"] == 0 and r["failed"] == 0
    ts = res.extra["fleet_timeseries"]
    assert (ts.loc[(ts["time_s"] > 100) & (ts["time_s"] < 595), "held"] == 0).all()  # at zero
    lives = res.extra["replicas"]
    assert (lives["end_reason"] == "scale_down").sum() >= 1
    late = res.requests[res.requests["arrival_s"] == 600.0].iloc[0]
    # Held at the router while a replica starts from zero: activation at the next scrape and
    # sync, then the 7 s cold start.
    assert 7.0 <= late["queue_s"] <= 7.0 + 5 + 5 + 1
    assert late["outcome"] == "completed"


def _first_scale_up(res) -> float:
    ts = res.extra["fleet_timeseries"]
    grew = ts[ts["desired"] > 1]
    return float(grew["time_s"].iloc[0])


def test_autoscaler_acts_on_scraped_averaged_data(monkeypatch):
    # Quiet, then 400 requests at t = 101 onto one replica.
    items = [(float(t), _spec()) for t in range(0, 100, 10)]
    items += [(101.0, _spec(400)) for _ in range(400)]

    def run(scrape: float, window: float):
        sc = scenario(
            engine={"max_num_seqs": 16},
            autoscaling={"scrape_interval_s": scrape, "window_s": window,
                         "timeseries_interval_s": 1, "pools": {"default": {
                             "max_replicas": 4, "sync_period_s": 5,
                             "signals": [{"kind": "pods", "metric": "num_requests_waiting",
                                          "target": 4}]}}},
            provisioning=FAST_START)
        return simulate_traffic(monkeypatch, sc, traffic(items))

    fresh = run(1, 1)
    stale = run(30, 60)
    assert _first_scale_up(fresh) == 105  # the first sync after the burst
    # Scrapes at 0, 30, 60, 90, 120: nothing is seen before the scrape at 120.
    assert _first_scale_up(stale) == 120


def test_pods_signal_on_the_ttft_p90(monkeypatch):
    # The same burst: requests queued behind 16 running ones see their TTFT grow; the pool's
    # windowed TTFT p90 (from completed requests) crosses the target and the HPA scales up. A
    # target no TTFT reaches never does.
    items = [(float(t), _spec()) for t in range(0, 100, 10)]
    items += [(101.0, _spec(400)) for _ in range(400)]

    def run(target: float):
        sc = scenario(
            engine={"max_num_seqs": 16},
            autoscaling={"scrape_interval_s": 1, "window_s": 30, "timeseries_interval_s": 1,
                         "pools": {"default": {
                             "max_replicas": 4, "sync_period_s": 5,
                             "signals": [{"kind": "pods", "metric": "time_to_first_token_p90_s",
                                          "target": target}]}}},
            provisioning=FAST_START)
        return simulate_traffic(monkeypatch, sc, traffic(items))

    first = _first_scale_up(run(2.0))
    assert 101 < first < 160
    ts = run(1e4).extra["fleet_timeseries"]
    assert (ts["desired"] <= 1).all()


def test_schedule_and_forecast_policies():
    from simulator.cluster.autoscale_spec import ForecastSignal, ScheduleSignal
    from simulator.cluster.autoscaler import Forecast, PoolView, Schedule

    sch = Schedule(ScheduleSignal.model_validate(
        {"entries": [{"at_s": 0, "replicas": 1}, {"at_s": 600, "replicas": 4}], "lead_s": 120}), 0.1)
    assert sch.propose(PoolView(470, 1, {}, 0, [])) == 1
    assert sch.propose(PoolView(480, 1, {}, 0, [])) == 4  # 120 s early
    # A rate ramping 1 + 0.01 t req/s, seen at t = 100: in 300 s it will be 5 req/s → 3 replicas
    # of 2 req/s each.
    fc = Forecast(ForecastSignal(requests_per_s_per_replica=2, history_s=100, lookahead_s=300),
                  0.1)
    rates = [(float(t), 1 + 0.01 * t) for t in range(0, 101, 10)]
    v = PoolView(100, 1, {}, 0, rates)
    assert fc.predict(v) == pytest.approx(5.0)
    assert fc.propose(v) == 3


def test_per_pool_scaling_of_a_prefill_pool(monkeypatch):
    pd_pools = [{"name": "prefill", "role": "prefill", "decode_pool": "decode", "replicas": 1},
                {"name": "decode", "role": "decode", "replicas": 1}]
    items = [(0.05 * i, RequestSpec(prompt_len=3000, output_len=20)) for i in range(1200)]
    sc = scenario(
        fleet={"pools": pd_pools},
        autoscaling={"pools": {"prefill": {"max_replicas": 3, "sync_period_s": 5, "signals": [
            {"kind": "schedule", "entries": [{"at_s": 0, "replicas": 3}]}]}}},
        provisioning=FAST_START)
    res = simulate_traffic(monkeypatch, sc, traffic(items))
    r = res.summary["requests"]
    assert r["completed"] == 1200
    lives = res.extra["replicas"]
    assert sorted(lives.groupby("pool").size().to_dict().items()) == [("decode", 1),
                                                                      ("prefill", 3)]
    att = res.extra["attempts"]
    new_ids = set(lives.loc[(lives["pool"] == "prefill") & (lives["start_s"] > 0), "replica"])
    assert len(new_ids) == 2
    # The new prefill replicas take traffic (attempts record the replica that served them last:
    # the decode one) — their engines ran steps.
    assert res.summary["autoscaling"]["pools"]["prefill"]["cold_starts"] == 2
    busy = res.timeseries[res.timeseries["replica"].isin(new_ids)]
    assert busy["num_requests_running"].sum() > 0
    assert len(att) == 1200


# ---- scale to zero under traffic (issue 22) --------------------------------------------------

KEDA_ZERO = {
    "fleet": {"replicas": 1},
    "workload": {"arrival": {"kind": "steps", "steps": [{"at_s": 0, "rate": 2},
                                                        {"at_s": 400, "rate": 8}]},
                 "num_requests": None, "duration_s": 700},
    "autoscaling": {"pools": {"default": {"min_replicas": 0, "max_replicas": 4,
                                          "signals": [{"kind": "queue", "target": 4}]}}}}


def _keda(**pool: object):
    d = {**KEDA_ZERO, "autoscaling": {"pools": {"default": {
        **KEDA_ZERO["autoscaling"]["pools"]["default"], **pool}}}}
    from simulator import simulate

    return simulate(scenario(**d))


def test_scale_to_zero_under_traffic_is_listed_in_the_summary_and_the_run_output():
    # KEDA on a waiting-only queue: one replica keeps up at 2 req/s, so the queue is empty, the
    # 300 s cooldown runs out and the only replica goes while requests keep arriving.
    res = _keda()
    a = res.summary["autoscaling"]
    [e] = a["scale_to_zero_under_traffic"]
    assert e["pool"] == "default" and e["at_s"] == pytest.approx(300.0)
    assert e["from_replicas"] == 1 and 1.5 < e["arriving_per_s"] < 2.5
    assert e["back_at_s"] is not None and e["back_at_s"] > e["at_s"]  # a forced cold start
    assert a["pools"]["default"]["scale_to_zero_under_traffic"] == [e]
    import io

    from rich.console import Console

    from simulator.report.console import render_run

    buf = io.StringIO()
    render_run(res.summary, res, Console(file=buf, width=120))
    out = buf.getvalue()
    assert "1 → 0 at 300 s while 2.1 req/s arrived" in out and "in_flight" in out


@pytest.mark.parametrize("remedy", [
    {"signals": [{"kind": "queue", "target": 4, "metric": "in_flight"}]},
    {"min_replicas": 1}])
def test_the_remedies_keep_a_replica_while_traffic_arrives(remedy):
    res = _keda(**remedy)
    a = res.summary["autoscaling"]
    assert a["scale_to_zero_under_traffic"] == []
    assert a["pools"]["default"]["scale_to_zero_events"] == 0
    assert res.summary["ttft_ms"]["p90"] < 1000
