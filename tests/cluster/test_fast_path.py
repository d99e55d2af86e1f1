"""The replica's decode fast path (``sim.fast_path``) changes nothing but speed: representative
scenarios give bit-identical frames with it on and off, and it does take most steps."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from simulator.cluster import replica
from simulator.config import load_scenario
from simulator.run import Results, simulate

from .helpers import scenario

SCENARIOS = "scenarios/{}.yaml"


def _both(make: Any) -> tuple[Results, Results]:
    return make(False), make(True)


def _shipped(name: str, *overrides: str) -> Any:
    def make(fast: bool) -> Results:
        sc = load_scenario(SCENARIOS.format(name),
                           [*overrides, f"sim.fast_path={str(fast).lower()}",
                            "metrics.record_steps=true"])
        return simulate(sc)
    return make


def _small(**over: Any) -> Any:
    extra = over.pop("metrics", {})

    def make(fast: bool) -> Results:
        metrics = {"record_steps": True, **extra}
        return simulate(scenario(sim={"fast_path": fast}, metrics=metrics, **over))
    return make


CASES = {
    # one replica, the default lengths at ~2/3 of its capacity
    "default": _small(workload={"arrival": {"kind": "poisson", "rate": 20},
                                "num_requests": 400}),
    # several replicas behind least-outstanding routing, a long tail of outputs
    "least-outstanding": _small(fleet={"replicas": 3, "router": {"kind": "least_outstanding"}},
                                workload={"arrival": {"kind": "poisson", "rate": 50},
                                          "num_requests": 500}),
    # KV pressure: chunked prefill, preemption and recompute, prefix cache
    "kv-pressure": _shipped("kv-pressure-preemption", "workload.num_requests=120"),
    # client timeouts and retries (aborts in the middle of decode runs)
    "retry-storm": _shipped("retry-storm", "workload.duration_s=75"),
    # a replica crash and restart, health checks
    "replica-failure": _shipped("replica-failure", "workload.duration_s=30"),
    # prefill/decode disaggregation: decode admission, KV transfers
    "disagg": _shipped("disagg-vs-agg", "workload.num_requests=250"),
    # light diurnal traffic under an HPA: long runs of decode steps between arrivals, run ahead
    # of the clock across Prometheus scrapes, replicas added and drained; per-token gaps not kept
    # (a lazy request's largest gap comes from the replica's stack of step gaps)
    "autoscaled-low-load": _small(
        workload={"arrival": {"kind": "diurnal", "rate": 6.0, "amplitude": 0.8,
                              "peak_hour": 0.02}, "num_requests": 700},
        autoscaling={"pools": {"default": {
            "min_replicas": 1, "max_replicas": 3, "sync_period_s": 5,
            "signals": [{"kind": "pods", "metric": "num_requests_running", "target": 6}]}}},
        metrics={"record_steps": True, "record_itl": False, "sample_interval_s": 1.0}),
    # the same light traffic on one replica without step rows (runs ahead counting steps only)
    "low-load-no-step-rows": _small(workload={"arrival": {"kind": "poisson", "rate": 3},
                                              "num_requests": 150},
                                    metrics={"record_steps": False}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fast_path_changes_nothing(case: str) -> None:
    slow, fast = _both(CASES[case])
    pd.testing.assert_frame_equal(slow.requests, fast.requests, check_exact=True)
    pd.testing.assert_frame_equal(slow.steps, fast.steps, check_exact=True)
    pd.testing.assert_frame_equal(slow.timeseries, fast.timeseries, check_exact=True)
    pd.testing.assert_frame_equal(slow.itl, fast.itl, check_exact=True)
    for name in ("attempts", "replicas"):
        pd.testing.assert_frame_equal(slow.extra[name], fast.extra[name], check_exact=True)
    for key in ("requests", "ttft_ms", "tpot_ms", "itl_ms", "e2e_ms", "queue_ms", "throughput",
                "kv_cache_usage", "preemptions", "prefix_cache_hit_rate", "fleet"):
        assert slow.summary[key] == fast.summary[key], key
    assert slow.summary["sim"]["steps"] == fast.summary["sim"]["steps"]
    assert slow.summary["sim"]["sim_time_s"] == fast.summary["sim"]["sim_time_s"]
    assert slow.summary["sim"]["fast_path_steps"] == 0
    assert slow.summary["sim"]["run_ahead_steps"] == 0
    # the fast path is really exercised (most steps of a busy replica are decode-only)
    assert fast.summary["sim"]["fast_path_steps"] > 0.3 * fast.summary["sim"]["steps"]
    # and so is running ahead of the clock (steps that end with no SimPy event of their own)
    assert fast.summary["sim"]["run_ahead_steps"] > 0
    assert slow.summary["sim"]["run_ahead_finishes"] == 0
    # ... finishing requests with the clock moved to the step's end where nothing comes between
    assert fast.summary["sim"]["run_ahead_finishes"] > 0


def test_itl_off_keeps_per_request_figures() -> None:
    on = simulate(scenario(workload={"num_requests": 150}))
    off = simulate(scenario(workload={"num_requests": 150}, metrics={"record_itl": False}))
    assert len(off.itl) == 0 and off.summary["itl_ms"]["p50"] is None
    pd.testing.assert_frame_equal(on.requests, off.requests, check_exact=True)
    assert on.summary["tpot_ms"] == off.summary["tpot_ms"]
    # every gap is there, per request, in time order
    assert len(on.itl) == int((on.requests["output_tokens"] - 1).clip(lower=0).sum())
    assert on.itl["request_id"].is_monotonic_increasing


def test_fast_path_changes_nothing_when_step_times_are_trimmed_often(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Step end times (and the stack of largest gaps) are trimmed every TRIM_ENDS steps; trim
    # every 16 so that long-lived lazy requests span many trims, with and without per-token gaps.
    monkeypatch.setattr(replica, "TRIM_ENDS", 16)
    for itl in (True, False):
        slow, fast = _both(_small(workload={"arrival": {"kind": "poisson", "rate": 4},
                                            "num_requests": 120},
                                  metrics={"record_itl": itl}))
        pd.testing.assert_frame_equal(slow.requests, fast.requests, check_exact=True)
        pd.testing.assert_frame_equal(slow.itl, fast.itl, check_exact=True)
