"""The calibration fit: reproducible, physical, recorded with its residuals, used by simulate().

Tests that refit need the shared data (``$SERVESIM_DATA_DIR`` or ``../shared/data``) and skip with
the reason when it is absent; the full refit of every GPU runs once per session (~15 s).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
import yaml
from typer.testing import CliRunner

from simulator.calibrate import datasets as ds
from simulator.calibrate import fit, fit_aic, fit_bench, fit_core, fit_rocm
from simulator.config import scenario_from_dict
from simulator.engine.kv_cache import KVCacheManager
from simulator.engine.request import Request
from simulator.engine.scheduler import Scheduler, SchedulerConfig
from simulator.engine.step_time import RooflineStepTime
from simulator.profiles import (
    Calibration,
    CalibrationProfile,
    CalibrationProvenance,
    find_calibration,
    list_calibrations,
    load_gpu,
    load_model,
)
from simulator.run import simulate

ROOT = ds.shared_data_root()
CAL_DIR = fit.calibration_dir()
EFFICIENCIES = [k for k in Calibration.model_fields if "efficiency" in k]


def efficiencies(co: Calibration) -> list[tuple[str, float | None]]:
    """Every efficiency of ``co``, per-group-size tables unrolled: (name, value)."""
    out: list[tuple[str, float | None]] = []
    for k in EFFICIENCIES:
        v = getattr(co, k)
        out += [(f"{k}[{n}]", x) for n, x in v.items()] if isinstance(v, dict) else [(k, v)]
    return out


def need(*parts: str) -> Path:
    p = ROOT.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data not found: {p} (set {ds.ENV_VAR} to the shared data root)")
    return p


@pytest.fixture(scope="module")
def refit() -> dict[str, CalibrationProfile]:
    need("calibration", "aiconfigurator", "systems", "data", "h100_sxm")
    need("calibration", "llm-inference-bench", "Plots", "All_results.csv")
    need("calibration", "rocm-vllm-devdocker", "mi300x_devdocker_latency_dedup.csv")
    return {f"{f.profile.gpu}__vllm-{f.profile.vllm_family}": f.profile for f in fit.fit_all()}


def app() -> typer.Typer:
    a = typer.Typer(add_completion=False)
    a.command("calibrate")(fit.calibrate_command)

    @a.command("noop")
    def _noop() -> None:  # a second command keeps typer from collapsing the app into one
        pass

    return a


# --------------------------------------------------------------------------------------------
# The committed files (no data needed)
# --------------------------------------------------------------------------------------------


def test_every_calibration_file_loads_and_is_physical():
    cals = list_calibrations()
    gpus = {c.gpu for c in cals}
    assert {"H100-SXM", "H200-SXM", "MI300X", "MI325X"} <= gpus
    for c in cals:
        load_gpu(c.gpu)  # names a real GPU profile
        assert (CAL_DIR / f"{c.gpu}__vllm-{c.vllm_family}.yaml").exists()
        co = c.coefficients
        for k, v in efficiencies(co):
            assert v is None or 0 < v <= 1, (c.gpu, k)
        if "V1 PRIOR" in c.provenance.method:  # vLLM V1: CPU work overlaps the GPU (a prior)
            for k, v in fit.V1_OVERHEADS.items():
                assert getattr(co, k) == v, (c.gpu, k)
        else:
            assert 200 <= co.step_overhead_us <= 10_000, c.gpu
            assert 0 <= co.per_seq_overhead_us <= 200, c.gpu
        assert co.layer_overhead_us <= fit_aic.LAYER_OVERHEAD_MAX_US + 1e-9 or c.gpu.startswith("MI")
        assert 0 < co.gemm_latency_us < 50 and 0 < co.attn_latency_us < 100
        pv = c.provenance
        assert pv.method and pv.data and pv.commit and pv.date
        assert all(not Path(d).is_absolute() for d in pv.data)  # relative to the data root


def test_fitted_files_record_their_residuals():
    for c in list_calibrations():
        res = c.provenance.residuals
        if c.gpu == "MI325X":  # a derived prior: nothing was fitted, nothing to report
            assert "DERIVED PRIOR" in c.provenance.method and not res
            continue
        tags = [k.removesuffix("_median_abs_rel_err_pct") for k in res
                if k.endswith("_median_abs_rel_err_pct")]
        assert tags, c.gpu
        for t in tags:
            assert 0 <= res[f"{t}_median_abs_rel_err_pct"] <= res[f"{t}_p90_abs_rel_err_pct"]
            assert res[f"{t}_points"] >= 1
    h100 = find_calibration("H100-SXM")
    assert h100 is not None
    assert {"gemm", "prefill_attention", "decode_attention", "allreduce", "moe", "e2e"} <= {
        k.removesuffix("_median_abs_rel_err_pct") for k in h100.provenance.residuals}


def test_mi300x_provenance_states_the_version_split():
    c = find_calibration("MI300X")
    assert c is not None and c.vllm_family == fit_rocm.MI300X_FAMILY
    m = c.provenance.method
    assert "FIT SET: vLLM 0.6.6, 0.7.3, 0.8.3, 0.8.5" in m
    assert "HELD OUT for validation: vLLM 0.9.0.1, 0.9.1, 0.10.0" in m
    # Fixed-batch latencies and offline throughput of the fit versions, never the held-out ones.
    assert c.provenance.data == [
        "calibration/rocm-vllm-devdocker/mi300x_devdocker_latency_dedup.csv",
        "calibration/rocm-vllm-devdocker/mi300x_devdocker_throughput_dedup.csv"]
    for v in fit_rocm.MI300X_FIT_VERSIONS:
        assert f"e2e_{v}_median_abs_rel_err_pct" in c.provenance.residuals
    for table in ("latency", "throughput"):
        assert c.provenance.residuals[f"{table}_median_abs_rel_err_pct"] < 10.0
    # The regime it covers: the throughput rows' thousands of sequences, TP8 only.
    assert c.provenance.regime["running_seqs"][1] == 3200 and c.provenance.regime["tp"] == [8]


def test_mi300x_throughput_rows_are_static_batches_of_the_fit_versions_only():
    from simulator.calibrate import datasets as ds
    from simulator.profiles import load_gpu

    rel = ("calibration", "rocm-vllm-devdocker")
    if not ds.shared_data_root().joinpath(*rel).exists():
        pytest.skip(f"shared data not found: {ds.shared_data_root().joinpath(*rel)} "
                    f"(set {ds.ENV_VAR} to the shared data root)")
    used: list[str] = []
    cases = fit_rocm.rocm_throughput_cases(load_gpu("MI300X"), fit_rocm.MI300X_FIT_VERSIONS, used)
    assert cases and {c.version for c in cases} <= set(fit_rocm.MI300X_FIT_VERSIONS)
    c = max(cases, key=lambda c: c.batch)
    assert c.batch == 3200 and c.input_len == 128 and c.output_len == 2048
    # Elapsed time = output tokens / the README's tokens/s (fit_rocm.ROCM_THROUGHPUT_TOTAL False).
    assert not fit_rocm.ROCM_THROUGHPUT_TOTAL
    assert 3200 * 2048 / c.latency_s > 10_000


def test_no_validation_data_is_used_for_fitting():
    for c in list_calibrations():
        if c.vllm_family == "custom":
            continue
        for d in c.provenance.data:
            assert "silicon" not in d and "dstack" not in d, (c.gpu, d)


def test_simulate_on_h100_picks_up_the_fitted_calibration():
    sc = scenario_from_dict({"fleet": {"gpu": "H100-SXM"},
                             "workload": {"num_requests": 40, "arrival": {"kind": "poisson",
                                                                          "rate": 5}}})
    res = simulate(sc)
    assert res.summary["deployment"]["calibration"].startswith("H100-SXM__vllm-0.24")
    assert res.deployment.calibration == find_calibration("H100-SXM").coefficients  # type: ignore[union-attr]


# --------------------------------------------------------------------------------------------
# Replaying batches through the scheduler
# --------------------------------------------------------------------------------------------


def test_static_batch_steps_match_the_scheduler_step_by_step():
    st = RooflineStepTime(load_model("Llama-3.1-70B"), load_gpu("H100-SXM"), tp=4,
                          weight_dtype="fp8", kv_dtype="fp8", calibration=Calibration())
    for batch, inp, out in ((3, 100, 7), (16, 2000, 40), (4, 9000, 5), (1, 128, 1)):
        feats = fit_core.static_batch_steps(batch, inp, out, num_blocks=100_000)
        s = Scheduler(SchedulerConfig(max_num_seqs=batch, max_num_batched_tokens=8192,
                                      max_model_len=inp + out + 16),
                      KVCacheManager(100_000, 16, True, inp + out + 16))
        for i in range(batch):
            s.add_request(Request(i, inp, out))
        total = 0.0
        while s.has_work():
            plan = s.schedule()
            total += st.predict(plan)
            s.update(plan)
        assert float(np.sum(st.total(feats))) == pytest.approx(total, rel=1e-12)


def test_static_latency_equals_simulating_the_offline_batch():
    batch, inp, out = 6, 300, 40
    sc = scenario_from_dict({
        "fleet": {"gpu": "H100-SXM", "tp": 1},
        # benchmark_latency runs vLLM's offline LLM class: no API server.
        "engine": {"max_num_seqs": batch, "max_num_batched_tokens": 8192,
                   "enable_prefix_caching": False, "api_server": {"enabled": False}},
        "workload": {"num_requests": batch, "arrival": {"kind": "offline"},
                     "input_len": {"kind": "fixed", "value": inp},
                     "output_len": {"kind": "fixed", "value": out}}})
    res = simulate(sc)
    gpu = load_gpu("H100-SXM")
    case = fit_core.StaticCase("t", "Llama-3.1-8B", 1, "bf16", "bf16", batch, inp, out, 0.0,
                          fit_core.static_batch_steps(batch, inp, out, num_blocks=10_000))
    pred = fit_core.static_latency(case, gpu, res.deployment.calibration)
    assert pred == pytest.approx(res.summary["sim"]["sim_time_s"], rel=1e-9)


# --------------------------------------------------------------------------------------------
# Refitting (data needed)
# --------------------------------------------------------------------------------------------


def test_refit_reproduces_the_committed_coefficients(refit):
    for name, prof in refit.items():
        committed = fit._read(fit.calibration_path(prof.gpu, prof.vllm_family))
        assert committed is not None, f"no committed calibration {name}"
        assert fit.changed_coefficients(committed.coefficients, prof.coefficients) == [], name
        assert committed.provenance.data == prof.provenance.data
        assert committed.provenance.method == prof.provenance.method
        for k, v in prof.provenance.residuals.items():
            assert committed.provenance.residuals[k] == pytest.approx(v, rel=1e-3, abs=1e-3), k


def test_kernel_fit_is_deterministic():
    need("calibration", "aiconfigurator", "systems", "data", "h100_sxm")
    gpu = load_gpu("H100-SXM")
    df = fit_aic._kernels("H100-SXM", "allreduce", fit_aic.KERNEL_VERSION["H100-SXM"], [])
    a = fit_aic.fit_allreduce(gpu, df, Calibration())
    assert fit_aic.fit_allreduce(gpu, df, Calibration()).values == a.values  # bit for bit
    # The optimum, not the path: another start lands on the same coefficients (to 1e-6).
    b = fit_aic.fit_allreduce(gpu, df, Calibration(allreduce_latency_us=20.0,
                                               allreduce_bw_efficiency=0.9))
    for k, v in a.values.items():
        assert b.values[k] == pytest.approx(v, rel=1e-6)


def test_rewriting_unchanged_coefficients_is_byte_identical(refit, tmp_path):
    for name, prof in refit.items():
        src = fit.calibration_path(prof.gpu, prof.vllm_family)
        dst = tmp_path / src.name
        shutil.copy(src, dst)
        before = dst.read_bytes()
        fit.write_profile(prof, tmp_path)
        assert dst.read_bytes() == before, name
    # A changed coefficient rewrites the file with a new date and an empty validation.
    prof = refit["H100-SXM__vllm-0.24"]
    moved = prof.model_copy(update={"coefficients": prof.coefficients.model_copy(
        update={"gemm_latency_us": prof.coefficients.gemm_latency_us * 1.01})})
    path = fit.write_profile(moved, tmp_path, date="2001-01-01")
    data = yaml.safe_load(path.read_text())
    assert data["provenance"]["date"] == "2001-01-01"
    assert data["provenance"]["validation"] == {}


def test_check_mode_passes_on_committed_files_and_fails_on_drift(refit, tmp_path, monkeypatch):
    monkeypatch.setattr(fit, "fit_all", lambda gpus=None: [
        fit_core.GpuFit(p) for p in refit.values() if gpus is None or p.gpu in gpus])
    for p in refit.values():
        shutil.copy(fit.calibration_path(p.gpu, p.vllm_family), tmp_path)
    runner = CliRunner()
    ok = runner.invoke(app(), ["calibrate", "--check", "--out", str(tmp_path)])
    assert ok.exit_code == 0, ok.output
    path = tmp_path / "H100-SXM__vllm-0.24.yaml"
    data = yaml.safe_load(path.read_text())
    data["coefficients"]["kv_bw_efficiency"] *= 0.9
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    bad = runner.invoke(app(), ["calibrate", "--check", "--out", str(tmp_path)])
    assert bad.exit_code == 1
    assert "kv_bw_efficiency" in bad.output


def test_bad_input_is_one_line_and_exit_2():
    runner = CliRunner()
    r = runner.invoke(app(), ["calibrate", "--gpu", "TPU-v9"])
    assert r.exit_code == 2 and "error: --gpu" in r.output
    r = runner.invoke(app(), ["calibrate", "--from-bench", "x.json"])
    assert r.exit_code == 2 and "--model" in r.output
    r = runner.invoke(app(), ["calibrate", "--from-bench", "/nonexistent.json", "--gpu", "H100-SXM",
                              "--model", "Llama-3.1-8B", "--tp", "1"])
    assert r.exit_code == 2 and "not found" in r.output


def test_from_bench_fit_beats_the_starting_calibration(tmp_path):
    runs = None
    try:
        runs = ds.dstack_serving_runs()
    except ds.DataMissing as e:
        pytest.skip(f"shared data not found: {e}")
    row = runs[(runs["gpu"] == "H100-SXM") & (runs["qps"] == 16.0)].iloc[0]
    prof, info = fit_bench.fit_from_benchmark(row["path"], "H100-SXM", "Llama-3.1-405B", 8, "fp8",
                                        max_num_seqs=512, max_num_batched_tokens=512,
                                        max_iters=1)
    assert prof.vllm_family == "custom" and prof.gpu == "H100-SXM"

    def err(kind: str) -> float:
        return (math.log(info[f"{kind}_mean_ttft_ms"] / info["measured_mean_ttft_ms"]) ** 2
                + math.log(info[f"{kind}_mean_tpot_ms"] / info["measured_mean_tpot_ms"]) ** 2)

    assert err("fitted") < err("start")
    for k, v in efficiencies(prof.coefficients):
        assert v is not None and 0 < v <= 1, k
    assert 200 <= prof.coefficients.step_overhead_us <= 10_000
    path = fit.write_profile(prof, tmp_path)
    assert path.name == "H100-SXM__vllm-custom.yaml"
    CalibrationProfile.model_validate(yaml.safe_load(path.read_text()))


def test_changed_coefficients_compares_flags_and_optional_values():
    a = Calibration()
    assert fit.changed_coefficients(a, a) == []
    b = a.model_copy(update={"fp8_act_quant": True, "moe_efficiency_fp4": 0.5})
    assert fit.changed_coefficients(a, b) == ["fp8_act_quant", "moe_efficiency_fp4"]
    c = b.model_copy(update={"moe_efficiency_fp4": 0.5 * (1 + 1e-9)})
    assert fit.changed_coefficients(b, c) == []
    rounded = fit_core._rounded(b)
    assert rounded.fp8_act_quant is True and rounded.moe_bw_efficiency_fp4 is None


def test_changed_coefficients_compares_group_size_tables_entry_by_entry():
    a = Calibration(allreduce_bw_efficiency_by_tp={2: 0.3, 8: 0.4})
    assert fit.changed_coefficients(a, a.model_copy()) == []
    near = a.model_copy(update={"allreduce_bw_efficiency_by_tp": {2: 0.3 * (1 + 1e-9), 8: 0.4}})
    assert fit.changed_coefficients(a, near) == []
    moved = a.model_copy(update={"allreduce_bw_efficiency_by_tp": {2: 0.3, 8: 0.41}})
    fewer = a.model_copy(update={"allreduce_bw_efficiency_by_tp": {2: 0.3}})
    assert fit.changed_coefficients(a, moved) == ["allreduce_bw_efficiency_by_tp"]
    assert fit.changed_coefficients(a, fewer) == ["allreduce_bw_efficiency_by_tp"]


def test_group_size_tables_are_written_with_integer_keys_and_read_back():
    prof = CalibrationProfile(
        gpu="H100-SXM", vllm_family="x",
        coefficients=Calibration(allreduce_latency_us_by_tp={2: 4.25, 8: 6.5}),
        provenance=CalibrationProvenance(method="test", date="2026-11-24"))
    text = fit.render(prof)
    assert "allreduce_latency_us_by_tp:\n    2: 4.25\n    8: 6.5\n" in text
    back = CalibrationProfile.model_validate(yaml.safe_load(text))
    assert back.coefficients.allreduce_latency_us_by_tp == {2: 4.25, 8: 6.5}


def test_allreduce_fit_has_one_curve_per_group_size_and_it_beats_the_shared_one():
    need("calibration", "aiconfigurator", "systems", "data", "h100_sxm")
    gpu = load_gpu("H100-SXM")
    df = ds.aiconfigurator_kernels("H100-SXM", "allreduce", "0.24.0")
    r = fit_aic.fit_allreduce(gpu, df, Calibration())
    assert sorted(r.values["allreduce_bw_efficiency_by_tp"]) == [2, 4, 8]
    assert sorted(r.values["allreduce_latency_us_by_tp"]) == [2, 4, 8]
    assert r.residuals["allreduce_median_abs_rel_err_pct"] \
        <= r.residuals["allreduce_shared_median_abs_rel_err_pct"]
    assert r.residuals["allreduce_p90_abs_rel_err_pct"] \
        < r.residuals["allreduce_shared_p90_abs_rel_err_pct"]
    # NVSwitch at 8 GPUs: the ring formula needs a higher bus efficiency there than at 2.
    eff = r.values["allreduce_bw_efficiency_by_tp"]
    assert eff[8] > eff[2]
    # The step model uses a group size's own pair and falls back to the shared one.
    cal = Calibration().model_copy(update=r.values)
    llama = load_model("Llama-3.1-8B")
    for tp, want in ((8, eff[8]), (2, eff[2])):
        st = RooflineStepTime(llama, gpu, tp=tp, weight_dtype="bf16", kv_dtype="bf16",
                              calibration=cal)
        assert st.ar_bw_eff == want
    assert RooflineStepTime(load_model("Llama-3.1-405B"), gpu, tp=16, weight_dtype="bf16",
                            kv_dtype="bf16", calibration=cal).ar_bw_eff \
        == r.values["allreduce_bw_efficiency"]


@pytest.mark.parametrize("dtypes", [("w4a16_mxfp4",), ("bfloat16", "fp8_block")])
def test_moe_fit_has_its_own_m_half_and_no_bias_between_decode_and_prefill_sizes(dtypes):
    need("calibration", "aiconfigurator", "systems", "data", "h100_sxm")
    gpu = load_gpu("H100-SXM")
    df = ds.aiconfigurator_kernels("H100-SXM", "moe", "0.24.0")
    start = Calibration(gemm_m_half=142.8)  # the dense fit's value
    fp4 = dtypes == ("w4a16_mxfp4",)
    r = (fit_aic.fit_moe_fp4 if fp4 else fit_aic.fit_moe)(gpu, df, start)
    m_half = r.values["moe_m_half_fp4" if fp4 else "moe_m_half"]
    assert 0.5 < m_half < start.gemm_m_half  # the grouped kernel ramps up faster than a GEMM
    tokens = fit_aic._moe_arrays(fit_aic._moe_rows(df, list(dtypes)))["T"]
    err = r.rel_errors
    decode, prefill = (tokens >= 16) & (tokens <= 512), tokens >= 6144
    # With the dense m_half the MXFP4 fit was ~+45 % at decode sizes and ~-25 % at prefill sizes.
    assert abs(np.median(err[decode])) < 0.1 and abs(np.median(err[prefill])) < 0.15
    tag = "moe_fp4" if fp4 else "moe"
    assert r.residuals[f"{tag}_median_abs_rel_err_pct"] < (8 if fp4 else 10)
    # The step model prices the experts with it (4-bit experts with the fp4 one).
    cal = start.model_copy(update=r.values)
    model = load_model("gpt-oss-120b" if fp4 else "Qwen3-30B-A3B")
    st = RooflineStepTime(model, gpu, tp=1, weight_dtype="fp4" if fp4 else "bf16",
                          kv_dtype="bf16", calibration=cal)
    assert st.moe_m_half == m_half


def test_v1_split_keeps_the_kernels_and_moves_the_pre_v1_overheads_to_family_v0():
    cal = Calibration(step_overhead_us=1800.0, per_seq_overhead_us=77.0, gemm_efficiency=0.8)
    prof = CalibrationProfile.model_validate({
        "gpu": "H100-SXM", "vllm_family": "0.24", "coefficients": cal.model_dump(),
        "provenance": {"method": "kernels.", "data": ["x"], "date": "2026-01-01"}})
    v1, v0 = fit.split_v1_v0(fit_core.GpuFit(prof))
    assert (v1.profile.vllm_family, v0.profile.vllm_family) == ("0.24", fit.V0_FAMILY)
    assert v0.profile.coefficients == cal
    for k, v in fit.V1_OVERHEADS.items():
        assert getattr(v1.profile.coefficients, k) == v
    assert v1.profile.coefficients.gemm_efficiency == 0.8  # same kernels
    assert v1.profile.coefficients.layer_overhead_us == cal.layer_overhead_us  # GPU kernels kept
    assert "V1 PRIOR" in v1.profile.provenance.method
    assert "pre-V1" in v0.profile.provenance.method


def test_balanced_moe_rows_touch_every_expert_they_route_to(monkeypatch):
    rows = pd.DataFrame({"num_tokens": [1, 8, 32, 64], "topk": [4] * 4,
                            "num_experts": [128] * 4, "hidden_size": [2880] * 4,
                            "inter_size": [2880] * 4, "moe_tp": [1] * 4})
    monkeypatch.setattr(fit_aic, "BALANCED_MOE_TOUCHES_ALL", True)
    a = fit_aic._moe_arrays(rows)
    assert list(a["touched"]) == [4, 32, 128, 128]  # min(E, T·k)
    assert list(a["m"]) == [1, 1, 1, 2]  # tokens per touched expert
    monkeypatch.setattr(fit_aic, "BALANCED_MOE_TOUCHES_ALL", False)
    assert fit_aic._moe_arrays(rows)["touched"][2] < 128  # random-routing expectation


def test_refit_writes_every_family_and_auto_keeps_the_newest(refit):
    nvidia = {f"{g}__vllm-{f}" for g in ("H100-SXM", "H200-SXM")
              for f in ("0.14", "0.19", "0.24", fit.V0_FAMILY)}
    assert set(refit) == nvidia | {"MI300X__vllm-0.8", "MI325X__vllm-0.8"}
    for g in ("H100-SXM", "H200-SXM"):
        found = find_calibration(g)
        assert found is not None and found.vllm_family == "0.24"  # auto: the newest family
        for v in fit_aic.OLDER_KERNEL_VERSIONS[g]:
            p = refit[f"{g}__vllm-{fit_aic._family(v)}"]
            assert "V1 PRIOR" in p.provenance.method and f"vLLM {v} kernel tables" in p.provenance.method
            for k, val in fit.V1_OVERHEADS.items():
                assert getattr(p.coefficients, k) == val
            # Every table comes from that version's folder unless the provenance names the
            # substitute and says why.
            for d in p.provenance.data:
                if "aiconfigurator" in d and f"/{v}/" not in d:
                    other = d.split("/vllm/")[1].split("/")[0]
                    assert f"vLLM {other} instead" in p.provenance.method \
                        or f"vLLM {other} (listed in data)" in p.provenance.method, d


def _median_attention_tflops(gpu_name: str, version: str) -> float:
    """Median causal bf16 prefill-attention TFLOP/s a context-attention table implies (prompts
    >= 4096 tokens, the served head layouts)."""
    df = ds.aiconfigurator_kernels(gpu_name, "context_attention", version, collapse_repeats=True)
    key = pd.Series(list(zip(df["num_heads"], df["num_kv_heads"], df["head_dim"], strict=True)),
                    index=df.index)
    df = df[(df["window_size"] == 0) & (df["attn_dtype"] == "bfloat16")
            & (df["kv_cache_dtype"] == "bfloat16") & key.isin(fit_aic.attention_heads())
            & (df["seq_len"] >= 4096)]
    s = df["seq_len"].to_numpy(float)
    flops = (4.0 * df["num_heads"] * df["head_dim"] * df["batch_size"]).to_numpy(float) \
        * s * (s + 1) / 2
    return float(np.median(flops / (df["latency_ms"].to_numpy(float) * 1e-3) / 1e12))


def test_substituted_kernel_table_is_unphysical_and_its_substitute_is_not():
    need("calibration", "aiconfigurator", "systems", "data", "h200_sxm")
    for (gpu_name, kind, version), (sub, why) in fit_aic.TABLE_SUBSTITUTES.items():
        assert kind == "context_attention" and why
        peak = load_gpu(gpu_name).bf16_tflops
        assert _median_attention_tflops(gpu_name, version) > 2 * peak  # faster than possible
        assert _median_attention_tflops(gpu_name, sub) < peak
