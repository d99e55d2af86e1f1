"""The replica's decode fast path (``sim.fast_path``, simulator/cluster/fast_path.py) changes
nothing but speed: representative scenarios give bit-identical frames with it on and off, and it
does take most steps; a replica driven directly gives the same per-request timings with it on and
off, its counts go on across a restart, and it is off where it cannot apply."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pandas as pd
import pytest
import simpy

from simulator.cluster import fast_path
from simulator.cluster.replica import Replica
from simulator.config import load_scenario
from simulator.engine.request import Request
from simulator.engine.scheduler import StepPlan
from simulator.metrics.recorder import Recorder
from simulator.run import Results, simulate
from simulator.simenv import Environment, at
from tests.engine.helpers import make_requests, make_scheduler

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
    monkeypatch.setattr(fast_path, "TRIM_ENDS", 16)
    for itl in (True, False):
        slow, fast = _both(_small(workload={"arrival": {"kind": "poisson", "rate": 4},
                                            "num_requests": 120},
                                  metrics={"record_itl": itl}))
        pd.testing.assert_frame_equal(slow.requests, fast.requests, check_exact=True)
        pd.testing.assert_frame_equal(slow.itl, fast.itl, check_exact=True)


# ---- the module's interface, on a replica driven directly ------------------------------------------


class LinearStepTime:
    """A step takes 1 ms + 10 µs per scheduled token, from its plan or from its totals alike (as
    the calibrated models guarantee). No ``decode_terms``: the fast path prices runs of decode
    steps through ``predict_totals``."""

    def predict(self, plan: StepPlan) -> float:
        return self.predict_totals(plan.num_tokens, plan.num_seqs, 0, [])

    def predict_totals(self, num_tokens: int, num_seqs: int, decode_ctx: int,
                       prefill: list[tuple[int, int]]) -> float:
        return 1e-3 + 1e-5 * num_tokens


class PlanOnly:
    """A step-time model that can only price a whole plan."""

    def predict(self, plan: StepPlan) -> float:
        return 1e-3


def _drive(fast: bool, crash_at: float | None = None) -> tuple[list[tuple[Any, ...]], Replica,
                                                                 pd.DataFrame, list[int]]:
    """Requests arriving every 7 ms at one replica (blocks of 16 tokens); optionally a crash and an
    immediate restart at ``crash_at``. Returns per-request (id, outputs, first token, finish,
    largest gap), the replica, its step rows and its fast-path step count before the crash."""
    env = Environment(initial_time=0.0)
    rec = Recorder(record_steps=True, record_itl=True)
    done: list[Request] = []
    rep = Replica(env, 0, lambda: make_scheduler(num_blocks=400, max_num_seqs=8), LinearStepTime(),
                  rec, lambda r, _rep: done.append(r), fast_path=fast)
    reqs = make_requests(40, prompt_len=37, max_tokens=60, start_id=0)
    before: list[int] = []

    def arrivals() -> Generator[simpy.Event, Any, None]:
        for r in reqs:
            rep.submit(r)
            yield env.timeout(0.007)

    def crash() -> Generator[simpy.Event, Any, None]:
        assert crash_at is not None
        yield env.timeout(crash_at)
        before.append(rep.fast_steps)
        rep.crash()
        rep.restart()

    env.process(arrivals())
    if crash_at is not None:
        env.process(crash())
    env.run(until=5.0)
    rep.sync()
    out = [(r.request_id, r.num_output_tokens, r.first_token_time, r.finish_time, r.itl_max)
           for r in sorted(done, key=lambda r: r.request_id)]
    return out, rep, rec.frames()[1], before


def test_a_replica_gives_the_same_timings_with_the_fast_path_on_and_off() -> None:
    slow, rep_slow, steps_slow, _ = _drive(False)
    fast, rep_fast, steps_fast, _ = _drive(True)
    assert len(fast) == 40 and all(r[1] == 60 for r in fast)
    assert fast == slow  # bit for bit: outputs, first token, finish, largest gap
    pd.testing.assert_frame_equal(steps_slow, steps_fast, check_exact=True)
    assert rep_fast.busy_time == rep_slow.busy_time and rep_fast.num_steps == rep_slow.num_steps
    assert rep_slow.fast is None and rep_slow.fast_steps == rep_slow.ahead_steps == 0
    assert rep_fast.fast_steps > 0.5 * rep_fast.num_steps and rep_fast.ahead_steps > 0


def test_fast_path_counts_go_on_across_a_restart() -> None:
    slow, _, _, _ = _drive(False, crash_at=0.1)
    fast, rep, _, before = _drive(True, crash_at=0.1)
    assert fast == slow  # the requests that were on it are lost, the rest served alike
    assert before and 0 < before[0] < rep.fast_steps


def test_fast_path_is_off_where_it_cannot_apply() -> None:
    env = Environment(initial_time=0.0)
    rec = Recorder()

    def build(step_time: Any, role: str) -> Replica:
        return Replica(env, 0, make_scheduler, step_time, rec, lambda r, _rep: None, role=role)
    assert build(LinearStepTime(), "mixed").fast is not None
    assert build(LinearStepTime(), "prefill").fast is None  # its tokens are not the client's
    assert build(PlanOnly(), "mixed").fast is None  # no step time from totals
    assert not fast_path.available(PlanOnly(), "decode")


def test_a_timer_at_fires_at_the_absolute_time() -> None:
    # 0.29045579343728 + (17.633047278253766 - 0.29045579343728) is 17.63304727825377: a
    # timeout of the difference would not end where step-by-step timeouts would have.
    a, b = 0.29045579343728, 17.633047278253766
    assert a + (b - a) != b
    env = Environment(initial_time=0.0)
    seen: list[float] = []

    def proc() -> Generator[simpy.Event, Any, None]:
        yield env.timeout(a)
        yield at(env, b)
        seen.append(env.now)
    env.process(proc())
    env.run()
    assert seen == [b]
