"""The production-load suites (simulator.calibrate.validate_load): load regimes, the scenarios
the ROCm-throughput and MLPerf suites build, and one simulated point of each. Tests that read
the shared data skip with the reason when it is absent."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from simulator.calibrate import datasets as ds
from simulator.calibrate import validate as v
from simulator.calibrate import validate_load as vl
from simulator.config import OfflineArrivals, PoissonArrivals


def _need(*rel: str) -> None:
    p = ds.shared_data_root().joinpath(*rel)
    if not p.exists():
        pytest.skip(f"shared data not found: {p} (set {ds.ENV_VAR} to the shared data root)")


def test_load_regimes_bin_running_sequences_per_gpu():
    assert [vl.load_regime(x) for x in (1, 32, 33, 128, 129, 512, 513, 5000)] == [
        "≤ 32", "≤ 32", "33–128", "33–128", "129–512", "129–512", "> 512", "> 512"]
    assert vl.load_regime(float("nan")) == ""


def test_running_per_gpu_averages_busy_samples_over_tp():
    ts = pd.DataFrame({"num_requests_running": [0, 0, 400, 800]})
    assert vl.running_per_gpu(ts, tp=8) == 75.0
    assert math.isnan(vl.running_per_gpu(pd.DataFrame(), tp=1))


def test_errors_split_by_regime_of_each_point():
    def point(run: float, err: float) -> v.PointResult:
        return v.PointResult("mlperf", "H200-SXM", f"p{run}", "x", True, [], "", {},
                             {"throughput": 1.0}, {"throughput": 1.0, "running_per_gpu": run},
                             {"throughput": err}, "c", 0.0)

    pts = [point(20, 5.0), point(300, -30.0), point(400, -10.0)]
    by = v.summarize_errors(pts, by_regime=True)
    assert list(by["regime"]) == ["≤ 32", "129–512"]
    assert list(by["n"]) == [1, 2] and list(by["bias"]) == [5.0, -20.0]
    assert list(v.summarize_errors(pts)["n"]) == [3]


def test_rocm_throughput_suite_holds_out_the_versions_the_mi300x_fit_did_not_use():
    _need("calibration", "rocm-vllm-devdocker")
    from simulator.calibrate.fit_rocm import MI300X_FIT_VERSIONS

    cases, skipped, notes = vl.build_rocm_throughput(v.Case, v.rocm_version_split)
    assert cases and not skipped
    versions = {c.info["vllm"] for c in cases}
    assert versions and not versions & set(MI300X_FIT_VERSIONS)
    c = next(c for c in cases if c.fast)
    sc = c.scenario
    assert isinstance(sc.workload.arrival, OfflineArrivals)
    assert sc.engine.max_num_seqs == c.info["max_num_seqs"] and sc.fleet.tp == 8
    assert sc.model.kv_cache_dtype == "fp8" and sc.engine.max_num_batched_tokens == 131072
    assert "held-out versions" in notes[0]


def test_mlperf_suite_rebuilds_each_engine_of_the_system():
    _need("benchmarks", "mlperf")
    cases, _, _ = vl.build_mlperf(v.Case)
    assert {c.gpu for c in cases} == {"H200-SXM", "MI300X"} and len(cases) == 10
    server = next(c for c in cases if c.info["scenario"] == "server")
    sc = server.scenario
    assert isinstance(sc.workload.arrival, PoissonArrivals)
    assert sc.workload.arrival.rate == pytest.approx(server.info["qps"] / vl.MLPERF_DP)
    assert sc.workload.num_requests == 49152 // vl.MLPERF_DP
    assert sc.engine.scheduler == "v0" and not sc.engine.enable_chunked_prefill
    assert set(server.measured) == {"throughput", "ttft_mean", "ttft_p99", "tpot_mean",
                                    "tpot_p99"}
    h200 = next(c for c in cases if c.gpu == "H200-SXM")
    assert h200.scenario.step_time.calibration == "v0"


def test_one_offline_point_of_each_suite_runs_at_production_load():
    _need("calibration", "rocm-vllm-devdocker")
    _need("benchmarks", "mlperf")
    (tput,) = [c for c in vl.build_rocm_throughput(v.Case, v.rocm_version_split)[0] if c.fast][:1]
    mlp = next(c for c in vl.build_mlperf(v.Case)[0] if c.fast)
    for case in (tput, mlp):
        r = v.run_case(case)
        assert isinstance(r, v.PointResult), r
        assert r.predicted["throughput"] > 0 and math.isfinite(r.error_pct["throughput"])
        # Hundreds of running sequences per GPU: the regime these suites exist for.
        assert r.predicted["running_per_gpu"] > 128
