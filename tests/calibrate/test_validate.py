"""Validation against measured vLLM: error arithmetic, the scenarios each suite builds, the report,
and the regression gate (fast subset vs the medians committed in benchmarks/fidelity.md).

The gate needs the shared data (``../shared/data`` or ``$SERVESIM_DATA_DIR``) and skips with the
reason when it is absent; everything else runs on synthetic rows.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from simulator.calibrate import datasets as ds
from simulator.calibrate import validate as v
from simulator.calibrate import validate_silicon as vs
from simulator.config import (
    ClosedLoopArrivals,
    FixedLength,
    FleetConfig,
    ModelConfig,
    OfflineArrivals,
    PoissonArrivals,
)
from simulator.profiles import find_calibration

REPO = Path(__file__).resolve().parents[2]
FIDELITY = REPO / "benchmarks" / "fidelity.md"


# --------------------------------------------------------------------------------------------
# Error arithmetic
# --------------------------------------------------------------------------------------------


def test_pct_error_is_signed_relative_to_measured():
    assert v.pct_error(110.0, 100.0) == pytest.approx(10.0)
    assert v.pct_error(90.0, 100.0) == pytest.approx(-10.0)
    assert math.isnan(v.pct_error(1.0, 0.0))
    assert math.isnan(v.pct_error(float("nan"), 1.0))
    assert math.isnan(v.pct_error(1.0, float("inf")))


def test_silicon_protocol_by_source():
    assert v.silicon_protocol("aic-auto-gap-analysis/h200_sxm/vllm/0.12.0/x.csv") == "steady"
    assert v.silicon_protocol("2026-04-06.csv") == "aiperf"
    assert v.silicon_protocol("db-dump/2026-04-27") == "aiperf"


def test_closed_loop_throughput_is_littles_law():
    # 8 clients, each request: 100 ms TTFT + 100 × 10 ms decode = 1.1 s for 101 tokens.
    assert v.closed_loop_throughput(8, 101, 100.0, 10.0) == pytest.approx(8 * 101 / 1.1)


def point(suite: str, gpu: str, errs: dict[str, float], excluded: str = "",
          fast: bool = True, flags: tuple[str, ...] = ()) -> v.PointResult:
    meas = dict.fromkeys(errs, 100.0)
    pred = {k: 100.0 + e for k, e in errs.items()}
    return v.PointResult(suite, gpu, f"p{len(errs)}{gpu}{sum(errs.values())}", "label", fast,
                         list(flags), excluded, {"tp": 1}, meas, pred,
                         {k: v.pct_error(pred[k], meas[k]) for k in errs}, "prior", 0.1)


def test_summary_median_p90_bias_and_target_status():
    pts = [point("silicon-dense", "H100-SXM", {"ttft_mean": e, "tpot_mean": e / 4})
           for e in (-30.0, 10.0, 20.0, 40.0)]
    pts.append(point("silicon-dense", "H100-SXM", {"ttft_mean": 999.0}, excluded="kv-queue"))
    s = v.summarize_errors(pts)
    ttft = s[s["metric"] == "ttft_mean"].iloc[0]
    assert ttft["n"] == 4  # the excluded point does not count
    assert ttft["median_abs_err"] == pytest.approx(25.0)
    assert ttft["p90_abs_err"] == pytest.approx(np.percentile([30, 10, 20, 40], 90))
    assert ttft["bias"] == pytest.approx(15.0)
    assert ttft["target"] == 20.0 and ttft["status"] == "miss"
    tpot = s[s["metric"] == "tpot_mean"].iloc[0]
    assert tpot["median_abs_err"] == pytest.approx(6.25) and tpot["status"] == "pass"


def bracket_point(meas: float, lockstep: float, desync: float, excluded: str = "") -> v.PointResult:
    p = point("silicon-dense", "H100-SXM", {"ttft_mean": desync - meas}, excluded=excluded)
    p.measured["ttft_mean"] = meas
    p.predicted["ttft_mean"] = desync
    p.predicted["ttft_mean_lockstep"] = lockstep
    p.error_pct["ttft_mean"] = v.pct_error(desync, meas)
    return p


def test_ttft_bracket_places_the_measurement_between_desynchronised_and_lock_step():
    inside, below, above = (bracket_point(100, 150, 60), bracket_point(50, 150, 60),
                            bracket_point(200, 150, 60))
    assert [v.ttft_bracket(p) for p in (inside, below, above)] == ["inside", "below", "above"]
    assert v.ttft_bracket(point("silicon-dense", "H100-SXM", {"ttft_mean": 5.0})) == ""
    b = v.summarize_ttft_bracket([inside, below, above, bracket_point(100, 150, 60, "kv-queue")])
    row = b.iloc[0]
    assert (row["n"], row["inside"], row["below"], row["above"]) == (3, 1, 1, 1)
    assert row["ramped_bias"] == pytest.approx(np.median([-40.0, 20.0, -70.0]))
    assert row["lockstep_bias"] == pytest.approx(np.median([50.0, 200.0, -25.0]))


def fake_report(points: list[v.PointResult]) -> v.Report:
    return v.Report(suites=["silicon-dense"], fast=True, points=points,
                    skipped=[v.Skipped("silicon-dense", "H100-SXM", "x", "dp=4 not modelled")],
                    summary=v.summarize_errors(points),
                    fast_summary=v.summarize_errors([p for p in points if p.fast]),
                    notes={"silicon-dense": ["2 points"]}, wall_s=1.0,
                    data_sources={"calibration/aiconfigurator": "github.com/x @ abc"},
                    calibrations=["none: prior"])


def test_markdown_embeds_a_gate_block_that_parses_back_and_detects_regressions():
    pts = [point("silicon-dense", "H100-SXM", {"ttft_mean": 12.0, "tpot_mean": 3.0}),
           point("silicon-dense", "H100-SXM", {"ttft_mean": 15.0, "tpot_mean": 5.0}, fast=False)]
    md = v.render_markdown(fake_report(pts), "servesim validate --fast --write x.md")
    assert "servesim validate --fast --write x.md" in md
    assert "| silicon-dense | H100-SXM | TTFT mean | 2 |" in md
    assert "dp=4 not modelled" in md
    gate = v.parse_gate_block(md)
    assert gate["median_abs_err_pct"]["silicon-dense"]["H100-SXM"] == {"ttft_mean": 12.0,
                                                                         "tpot_mean": 3.0}
    assert v.gate_regressions(gate, gate) == []
    worse = {"median_abs_err_pct": {"silicon-dense": {"H100-SXM": {"ttft_mean": 14.5}}}}
    problems = v.gate_regressions(gate, worse)
    assert any("ttft_mean" in p and "14.50%" in p for p in problems)
    assert any("tpot_mean" in p and "no longer computed" in p for p in problems)
    better = {"median_abs_err_pct": {"silicon-dense": {"H100-SXM": {"ttft_mean": 13.9,
                                                                    "tpot_mean": 1.0}}}}
    assert v.gate_regressions(gate, better) == []


# --------------------------------------------------------------------------------------------
# The scenarios each suite builds
# --------------------------------------------------------------------------------------------


def silicon_rows(rows: list[dict]) -> pd.DataFrame:
    base = {"mode": "agg", "gpu": "H100-SXM", "precision": None, "pp": 1, "dp": 1, "ep": 1,
            "moe_tp": 1, "vllm_version": "0.12.0", "ttft_ms": 200.0, "tpot_ms": 20.0}
    out = []
    for i, r in enumerate(rows):
        out.append({**base, "point_id": f"pt{i}", **r})
    return pd.DataFrame(out)


def test_silicon_point_becomes_closed_loop_with_fixed_lengths_and_recorded_tp():
    df = silicon_rows([
        {"model": "Llama-3.1-70B", "precision": "fp8", "tp": 4, "moe_tp": 4, "isl": 1024,
         "osl": 1024, "concurrency": 16},
        {"model": "Qwen3-32B", "precision": None, "tp": 2, "isl": 4096, "osl": 512,
         "concurrency": 8, "ttft_ms": 25_000.0},
        {"model": "Kimi-K2.5", "precision": "int4", "tp": 8, "isl": 1024, "osl": 1024,
         "concurrency": 4},
        {"model": "gpt-oss-120b", "precision": "fp4", "tp": 2, "isl": 1024, "osl": 1024,
         "concurrency": 4},
    ])
    cases, skipped, _ = v.build_silicon("silicon-dense", df)
    assert [c.info["model"] for c in cases] == ["Llama-3.1-70B", "Qwen3-32B"] and not skipped
    llama, qwen = cases
    sc = llama.scenario
    assert isinstance(sc.workload.arrival, ClosedLoopArrivals)
    assert sc.workload.arrival.concurrency == 16
    assert sc.workload.input_len == FixedLength(value=1024)
    assert sc.workload.output_len == FixedLength(value=1024)
    assert sc.workload.num_requests == v.burst_waves(1024, 1024) * 16 == 3 * 16
    assert v.burst_waves(1024, 8192) == 2  # long outputs: wave 3 changes nothing
    assert sc.engine.api_server.enabled  # the rows ran behind an HTTP front end
    assert sc.fleet.tp == 4 and sc.fleet.gpu == "H100-SXM"
    assert sc.model.name == "Llama-3.1-70B" and sc.model.weight_dtype == "fp8"
    assert sc.model.kv_cache_dtype == "auto"
    assert sc.engine.max_model_len == 2048 and sc.engine.enable_chunked_prefill
    assert llama.fast  # (H100, 70B fp8, tp4, 1024/1024, c16) is in the fast subset
    assert llama.measured["throughput"] == pytest.approx(
        v.closed_loop_throughput(16, 1024, 200.0, 20.0))
    # Blank precision = bf16; a > 10 s TTFT is simulated but not summarised.
    assert qwen.scenario.model.weight_dtype == "bf16"
    assert "kv-queue" in qwen.flags and qwen.excluded


def test_silicon_moe_layouts():
    df = silicon_rows([
        {"model": "MiniMax-M2.5", "precision": "fp8", "tp": 4, "ep": 4, "moe_tp": 1,
         "isl": 1024, "osl": 1024, "concurrency": 32},
        {"model": "MiniMax-M2.5", "precision": "fp8", "tp": 4, "dp": 4, "ep": 16, "moe_tp": 1,
         "isl": 1024, "osl": 1024, "concurrency": 64},
        {"model": "Qwen3-235B-A22B", "precision": "fp8", "tp": 1, "dp": None, "ep": 1,
         "moe_tp": 2, "isl": 1000, "osl": 100, "concurrency": 8},
        {"model": "gpt-oss-120b", "precision": "fp4", "tp": 2, "ep": 1, "moe_tp": 2,
         "isl": 1024, "osl": 1024, "concurrency": 16},
    ])
    cases, skipped, notes = v.build_silicon("silicon-moe", df)
    assert [(c.info["model"], c.scenario.fleet.tp) for c in cases] == [
        ("MiniMax-M2.5", 4), ("gpt-oss-120b", 2)]
    assert cases[0].scenario.model.name == "MiniMax-M2" and "ep-as-tp" in cases[0].flags
    assert cases[1].scenario.model.weight_dtype == "fp4" and not cases[1].flags
    reasons = sorted(s.reason for s in skipped)
    assert reasons[0].startswith("attention data parallel dp=4")
    assert reasons[1].startswith("inconsistent layout tp=1")
    assert any("EP is not modelled" in n for n in notes)


def test_dstack_and_rocm_scenarios():
    sc = v.dstack_scenario("H100-SXM", 16.0, 1000)
    assert isinstance(sc.workload.arrival, PoissonArrivals) and sc.workload.arrival.rate == 16.0
    assert sc.engine.max_num_batched_tokens == 512 and sc.engine.enable_chunked_prefill
    assert sc.fleet.tp == 8 and sc.model.weight_dtype == "fp8"
    mi = v.dstack_scenario("MI300X", 32.0, 1000)
    assert not mi.engine.enable_chunked_prefill and mi.engine.max_num_seqs == 1024
    assert mi.engine.max_num_batched_tokens >= (mi.engine.max_model_len or 0)
    ro = v.rocm_scenario("Llama-3.1-70B", 64, 2048, 2048)
    assert isinstance(ro.workload.arrival, OfflineArrivals)
    assert ro.workload.num_requests == 64 and ro.engine.max_num_seqs == 64
    assert ro.model.kv_cache_dtype == "fp8" and ro.fleet.gpu == "MI300X" and ro.fleet.tp == 8


def test_dstack_measured_uses_ok_rows_only():
    req = pd.DataFrame({
        "ok": [True, True, False],
        "ttft_s": [0.1, 0.3, 0.0],
        "itl_s": [[0.01, 0.03], [], []],
        "tpot_s": [0.02, np.nan, np.nan],
        "output_len": [3, 1, 0],
    })
    m = v.dstack_measured(req, duration_s=2.0)
    assert m["ttft_mean"] == pytest.approx(200.0)
    assert m["itl_mean"] == pytest.approx(20.0) and m["itl_p50"] == pytest.approx(20.0)
    assert m["tpot_mean"] == pytest.approx(20.0)
    assert m["throughput"] == pytest.approx(2.0)


def test_rocm_held_out_versions_come_from_the_mi300x_calibration(tmp_path):
    versions = ["0.6.6", "0.7.3", "0.8.5", "0.9.0.1", "0.9.1", "0.10.0"]
    held, src = v.rocm_version_split(versions, tmp_path)
    assert held == ["0.9.0.1", "0.9.1", "0.10.0"] and src.startswith("fallback")
    f = tmp_path / "MI300X__vllm-0.8.yaml"
    f.write_text("gpu: MI300X\nprovenance:\n  method: fit\n  data:\n"
                 "    - calibration/rocm-vllm-devdocker latency, vLLM 0.6.6, 0.7.3 and 0.8.5\n")
    held, src = v.rocm_version_split(versions, tmp_path)
    assert held == ["0.9.0.1", "0.9.1", "0.10.0"] and "0.8.5" in src
    f.write_text("gpu: MI300X\nprovenance:\n  method: 'MAP fit on ROCm latencies. FIT SET: vLLM "
                 "0.6.6, 0.7.3; HELD OUT for validation: vLLM 0.9.1, 0.10.0. Priors: x~0.75'\n")
    held, src = v.rocm_version_split(versions, tmp_path)
    assert held == ["0.9.1", "0.10.0"] and "held out" in src
    f.write_text("gpu: MI300X\nprovenance:\n  method: 'FIT SET: vLLM 0.6.6, 0.7.3 and 0.8.5.'\n")
    assert v.rocm_version_split(versions, tmp_path)[0] == ["0.9.0.1", "0.9.1", "0.10.0"]
    f.write_text("gpu: MI300X\nprovenance:\n  fit_versions: ['0.6.6']\n")
    assert v.rocm_version_split(versions, tmp_path)[0] == versions[1:]
    f.write_text("gpu: MI300X\nprovenance:\n  held_out_versions: ['0.10.0']\n")
    assert v.rocm_version_split(versions, tmp_path)[0] == ["0.10.0"]


# --------------------------------------------------------------------------------------------
# Simulating cases (small, synthetic)
# --------------------------------------------------------------------------------------------


def test_burst_mean_weights_the_burst_one_in_k():
    assert v.burst_mean(1000.0, 100.0, k=10) == pytest.approx(190.0)
    assert v.burst_mean(5.0, 5.0) == pytest.approx(5.0)


@pytest.mark.parametrize("protocol", ["aiperf", "steady"])
def test_closed_loop_case_reduces_as_the_benchmark_did(protocol):
    sc = v.silicon_scenario(model="Llama-3.1-8B", weight_dtype="bf16", gpu="H100-SXM", tp=1,
                            isl=256, osl=16, concurrency=4)
    case = v.Case("silicon-dense", "H100-SXM", "p", "l", "closed_loop", sc,
                  {"ttft_mean": 50.0, "tpot_mean": 5.0, "throughput": 100.0},
                  info={"concurrency": 4, "osl": 16, "protocol": protocol})
    from simulator.run import simulate

    req = simulate(sc).requests
    w1, w2 = req[req["request_id"] < 4], req[(req["request_id"] >= 4) & (req["request_id"] < 8)]
    pred, _ = v.predict_case(case)
    cycle = (w2["ttft_s"].mean() + 15 * w2["tpot_s"].mean())
    steady = v.steady_prediction(case, cycle)
    if protocol == "aiperf":  # the burst counted once in ten waves, the rest desynchronised
        assert pred["ttft_mean"] == pytest.approx(
            v.burst_mean(w1["ttft_s"].mean() * 1000, steady["ttft_steady"]))
        assert pred["ttft_mean_lockstep"] == pytest.approx(
            v.burst_mean(w1["ttft_s"].mean() * 1000, w2["ttft_s"].mean() * 1000))
    else:  # steady-state rows: no burst
        assert pred["ttft_mean"] == pytest.approx(steady["ttft_steady"])
        assert pred["tpot_mean"] == pytest.approx(steady["tpot_steady"])
        assert pred["ttft_mean_lockstep"] == pytest.approx(w2["ttft_s"].mean() * 1000)
    res = v.run_case(case)
    assert isinstance(res, v.PointResult)
    assert res.error_pct["ttft_mean"] == pytest.approx(
        v.pct_error(pred["ttft_mean"], 50.0))
    # Desynchronised clients queue less for prefill than lock-stepped ones.
    assert 0 < pred["ttft_mean"] < pred["ttft_mean_lockstep"]
    assert "ttft_mean_lockstep" not in res.error_pct  # a bound, not a compared metric


def test_replay_sends_the_recorded_lengths_in_order():
    pairs = ((100, 5), (7, 1), (300, 20), (50, 2))
    sc = v.dstack_scenario("H100-SXM", 50.0, len(pairs)).model_copy(
        update={"model": ModelConfig(name="Llama-3.1-8B", weight_dtype="bf16"),
                "fleet": FleetConfig(gpu="H100-SXM", tp=1)})
    from simulator.run import simulate

    with v.replayed_requests(pairs):
        req = simulate(sc).requests.sort_values("request_id")
    assert list(zip(req["input_tokens"], req["output_tokens"], strict=True)) == list(pairs)
    assert req["arrival_s"].is_monotonic_increasing
    # Outside the context manager the workload's own lengths are used again (fixed, 1 token).
    assert simulate(sc).requests["input_tokens"].eq(1).all()


def test_command_without_data_is_one_line_naming_the_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv(ds.ENV_VAR, str(tmp_path / "missing"))
    app = typer.Typer()
    app.command("validate")(v.validate_command)
    app.command("noop")(lambda: None)
    out = CliRunner().invoke(app, ["validate", "--fast"])
    assert out.exit_code == 2
    lines = [x for x in out.output.splitlines() if x.strip()]
    assert len(lines) == 1 and ds.ENV_VAR in lines[0] and lines[0].startswith("error:")


# --------------------------------------------------------------------------------------------
# Regression gate (needs the shared data)
# --------------------------------------------------------------------------------------------


def _need_data() -> None:
    root = ds.shared_data_root()
    for rel in (("calibration", "aiconfigurator", "silicon_sample.csv"),
                ("benchmarks", "dstack"), ("calibration", "rocm-vllm-devdocker")):
        if not root.joinpath(*rel).exists():
            pytest.skip(f"shared data not found: {root.joinpath(*rel)} "
                        f"(set {ds.ENV_VAR} to the shared data root)")


def test_fast_subset_does_not_regress_against_committed_fidelity():
    _need_data()
    if not FIDELITY.is_file():
        pytest.fail(f"{FIDELITY} missing: run `servesim validate --fast --write "
                    f"benchmarks/fidelity.md` and commit it")
    committed = v.parse_gate_block(FIDELITY.read_text())
    report = v.validate(fast=True)
    current = v.gate_block(report.fast_summary)
    problems = v.gate_regressions(committed, current)
    assert not problems, ("fidelity regressed (rerun `servesim validate --fast --write "
                          "benchmarks/fidelity.md` if intended):\n" + "\n".join(problems))


def test_dstack_runs_use_the_pre_v1_family_when_the_gpu_has_one():
    from simulator.calibrate import fit

    fam = v.dstack_calibration("H100-SXM")
    has_v0 = find_calibration("H100-SXM", fit.V0_FAMILY) is not None
    assert fam == (fit.V0_FAMILY if has_v0 else "auto")
    assert v.dstack_calibration("MI300X") == "auto"  # its only family was fitted on vLLM 0.6-0.8
    assert v.dstack_scenario("H100-SXM", 16.0, 10).step_time.calibration == fam


def test_silicon_family_follows_the_recorded_vllm_version():
    fams = ["0.14", "0.19", "0.24"]
    pick = {ver: v.silicon_calibration("H100-SXM", ver, fams) for ver in (
        "0.11.2", "0.12.0", "v0.12.0", "0.14.1", "0.15.0", "0.16.0", "0.18.0", "0.19.1",
        "0.20.0", "0.24.0", "0.30.1", "", "?", "nightly", "0.12.0.dev3+g1234abc", "0.19.0rc1")}
    assert pick == {
        "0.11.2": "0.14", "0.12.0": "0.14", "v0.12.0": "0.14", "0.14.1": "0.14",
        "0.15.0": "0.19", "0.16.0": "0.19", "0.18.0": "0.19", "0.19.1": "0.19",
        # Newer than every older family, unknown or not a release: the newest (what auto picks).
        "0.20.0": "auto", "0.24.0": "auto", "0.30.1": "auto", "": "auto", "?": "auto",
        "nightly": "auto", "0.12.0.dev3+g1234abc": "auto", "0.19.0rc1": "auto"}
    assert v.silicon_calibration("MI300X", "0.12.0", ["0.8"]) == "auto"
    assert v.silicon_calibration("H100-SXM", "0.12.0", []) == "auto"


def test_silicon_rows_are_simulated_with_the_family_of_their_version(monkeypatch):
    fams = v.kernel_families("H100-SXM")
    assert fams == sorted(fams, key=lambda f: tuple(map(int, f.split("."))))
    assert fams[-1] == find_calibration("H100-SXM").vllm_family  # auto = the newest family
    df = silicon_rows([
        {"model": "Qwen3-32B", "tp": 2, "isl": 1024, "osl": 128, "concurrency": 8},
        {"model": "Qwen3-32B", "tp": 2, "isl": 1024, "osl": 128, "concurrency": 8,
         "vllm_version": "0.18.0"},
        {"model": "Llama-3.1-70B", "precision": "fp8", "tp": 4, "isl": 1024, "osl": 1024,
         "concurrency": 16, "vllm_version": None},
    ])
    cases, _, notes = v.build_silicon("silicon-dense", df)
    got = [c.scenario.step_time.calibration for c in cases]
    assert got == [v.silicon_calibration("H100-SXM", x, fams) for x in ("0.12.0", "0.18.0", "")]
    assert got[2] == "auto"
    if {"0.14", "0.19"} <= set(fams):
        assert got[:2] == ["0.14", "0.19"]
    assert any(n.startswith("calibration family by the recorded vLLM version") for n in notes)
    monkeypatch.setattr(vs, "FAMILY_BY_VERSION", False)
    cases, _, _ = v.build_silicon("silicon-dense", df)
    assert [c.scenario.step_time.calibration for c in cases] == ["auto"] * 3


def test_point_table_names_the_calibration_each_point_ran_with():
    p = point("silicon-dense", "H100-SXM", {"ttft_mean": 12.0})
    p.calibration = "H100-SXM__vllm-0.14"
    md = v.render_markdown(fake_report([p]), "servesim validate --fast --write x.md")
    head = next(line for line in md.splitlines() if line.startswith("| GPU | point |"))
    assert "| calibration |" in head
    assert "| vllm-0.14 |" in md


def test_a_drained_warmup_changes_nothing_in_the_measured_phase():
    """Why validate does not simulate aiperf's warm-up: once drained it leaves an empty engine."""
    from simulator.run import simulate

    sc = v.silicon_scenario(model="Llama-3.1-8B", weight_dtype="bf16", gpu="H100-SXM", tp=1,
                            isl=512, osl=32, concurrency=4)
    wl = sc.workload
    warm = sc.model_copy(update={"workload": wl.model_copy(update={
        "arrival": wl.arrival.model_copy(update={"warmup_requests": 8})})})
    a = simulate(sc).summary
    b = simulate(warm).summary
    assert b["requests"]["arrived"] == a["requests"]["arrived"] + 8
    for key in ("ttft_ms", "tpot_ms"):
        assert b[key]["mean"] == pytest.approx(a[key]["mean"], rel=1e-9)
