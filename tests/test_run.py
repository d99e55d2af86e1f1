"""Invariants every run must satisfy: conservation, determinism, Little's law, outcomes."""

from __future__ import annotations

import numpy as np
import pytest

from simulator import simulate
from simulator.errors import ConfigError
from tests.conftest import small_scenario


def _same(a: dict, b: dict) -> None:
    a = {**a, "sim": {k: v for k, v in a["sim"].items() if k != "wall_s"}}
    b = {**b, "sim": {k: v for k, v in b["sim"].items() if k != "wall_s"}}
    assert a == b


def test_conservation_and_summary_shape():
    res = simulate(small_scenario())
    s = res.summary
    r = s["requests"]
    assert r["arrived"] == 300
    assert r["arrived"] == r["completed"] + r["rejected"] + r["timed_out"] + r["in_flight"]
    for key in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"):
        assert set(s[key]) >= {"mean", "p50", "p90", "p99"}
        assert 0 < s[key]["p50"] <= s[key]["p90"] <= s[key]["p99"]
    assert set(s["throughput"]) >= {"requests_per_s", "input_tokens_per_s", "output_tokens_per_s"}
    assert set(s["sim"]) >= {"seed", "wall_s", "sim_time_s", "version"}
    assert 0 <= s["kv_cache_usage"]["mean"] <= s["kv_cache_usage"]["max"] <= 1
    assert isinstance(s["preemptions"], int)
    # Per-request rows are complete and consistent.
    df = res.requests
    assert len(df) == 300 and df["request_id"].is_unique
    done = df[df["outcome"] == "completed"]
    assert (done["first_token_s"] >= done["arrival_s"]).all()
    assert (done["finish_s"] >= done["first_token_s"]).all()
    assert (done["output_tokens"] >= 1).all()


def test_same_seed_same_results_and_other_seed_differs():
    a = simulate(small_scenario(seed=7))
    b = simulate(small_scenario(seed=7))
    _same(a.summary, b.summary)
    assert a.requests.equals(b.requests)
    c = simulate(small_scenario(seed=8))
    assert c.summary["ttft_ms"] != a.summary["ttft_ms"]


def test_littles_law_in_steady_state():
    sc = small_scenario(workload={"num_requests": 3000, "arrival": {"kind": "poisson", "rate": 15}},
                        metrics={"sample_interval_s": 0.05})
    res = simulate(sc)
    df = res.requests
    t0, t1 = 20.0, float(df["arrival_s"].max())
    arrived = df[(df["arrival_s"] >= t0) & (df["arrival_s"] < t1)]
    lam = len(arrived) / (t1 - t0)
    w = float(arrived["e2e_s"].mean())
    ts = res.timeseries
    window = ts[(ts["time_s"] >= t0) & (ts["time_s"] < t1)]
    L = float(window.groupby("time_s")["in_system"].sum().mean())
    assert pytest.approx(lam * w, rel=0.05) == L


def test_requests_longer_than_max_model_len_are_rejected_not_lost():
    sc = small_scenario(engine={"max_model_len": 512},
                        workload={"num_requests": 200,
                                  "input_len": {"kind": "fixed", "value": 400},
                                  "output_len": {"kind": "lognormal", "mean": 100, "cv": 1}})
    s = simulate(sc).summary["requests"]
    assert s["rejected"] > 0 and s["completed"] > 0
    assert s["arrived"] == s["completed"] + s["rejected"]


def test_duration_cut_leaves_requests_in_flight_and_counts_them():
    sc = small_scenario(workload={"num_requests": None, "duration_s": 20.0,
                                  "arrival": {"kind": "poisson", "rate": 30}})
    res = simulate(sc)
    r = res.summary["requests"]
    assert r["in_flight"] > 0
    assert r["arrived"] == r["completed"] + r["rejected"] + r["timed_out"] + r["in_flight"]
    assert res.summary["sim"]["sim_time_s"] == pytest.approx(20.0)


def test_closed_loop_never_exceeds_its_concurrency():
    sc = small_scenario(workload={"num_requests": 200,
                                  "arrival": {"kind": "closed_loop", "concurrency": 8}},
                        metrics={"sample_interval_s": 0.01})
    res = simulate(sc)
    assert res.timeseries["in_system"].max() <= 8
    assert res.summary["requests"]["completed"] == 200


def test_offline_batch_arrives_at_once_and_prefix_caching_hits_shared_system_prompt():
    sc = small_scenario(workload={"num_requests": 100, "arrival": {"kind": "offline"},
                                  "system_prompt_tokens": 512})
    res = simulate(sc)
    assert (res.requests["arrival_s"] == 0).all()
    assert res.summary["prefix_cache_hit_rate"] > 0.3
    assert (res.requests["cached_tokens"] > 0).mean() > 0.9


def test_more_replicas_lower_latency_under_load():
    hot = {"num_requests": 600, "arrival": {"kind": "poisson", "rate": 40}}
    one = simulate(small_scenario(workload=hot)).summary
    four = simulate(small_scenario(workload=hot, fleet={"replicas": 4})).summary
    assert four["e2e_ms"]["mean"] < one["e2e_ms"]["mean"]
    assert four["tpot_ms"]["mean"] < one["tpot_ms"]["mean"]


def test_kv_pressure_causes_preemptions_and_all_still_complete():
    # 70B bf16 on 2 H100s leaves little KV cache; long outputs at a high rate force preemption.
    sc = small_scenario(model={"name": "Llama-3.1-70B", "weight_dtype": "bf16"},
                        fleet={"gpu": "H100-SXM", "tp": 2},
                        engine={"max_model_len": 8192},
                        workload={"num_requests": 300, "arrival": {"kind": "offline"},
                                  "input_len": {"kind": "fixed", "value": 1000},
                                  "output_len": {"kind": "fixed", "value": 1500}})
    res = simulate(sc)
    assert res.summary["preemptions"] > 0
    assert res.summary["requests"]["completed"] == 300
    assert (res.requests["preemptions"] > 0).any()


def test_model_that_does_not_fit_is_a_config_error():
    with pytest.raises(ConfigError, match="raise tp"):
        simulate(small_scenario(model={"name": "Llama-3.1-405B", "weight_dtype": "bf16"},
                                fleet={"tp": 4}))


def test_itl_samples_match_per_request_means():
    res = simulate(small_scenario())
    per_req = res.itl.groupby("request_id")["itl_s"].mean()
    df = res.requests.set_index("request_id")
    common = per_req.index.intersection(df.index[df["itl_mean_s"].notna()])
    assert np.allclose(per_req.loc[common], df.loc[common, "itl_mean_s"])


@pytest.mark.parametrize("duration", [None, 8.0])
def test_frames_only_run_has_the_same_frames_counts_and_window(duration):
    """``summaries=False`` (what validation runs) changes nothing the run recorded: the same
    frames, request counts and measured window as the full run, without the derived figures."""
    sc = small_scenario(seed=3)
    if duration is not None:  # requests still in flight at the end: the window runs to the end
        sc = sc.model_copy(update={"workload": sc.workload.model_copy(
            update={"duration_s": duration})})
    full = simulate(sc)
    lean = simulate(sc, summaries=False)
    for frame in ("requests", "steps", "timeseries", "itl"):
        assert getattr(lean, frame).equals(getattr(full, frame)), frame
    assert lean.extra["attempts"].equals(full.extra["attempts"])
    assert lean.summary["requests"] == {k: full.summary["requests"][k]
                                        for k in lean.summary["requests"]}
    assert lean.summary["window_s"] == full.summary["window_s"]
    assert lean.summary["warnings"] == full.summary["warnings"]
    assert "ttft_ms" not in lean.summary and "cost" not in lean.summary
    if duration is not None:
        assert lean.summary["requests"]["in_flight"] > 0
