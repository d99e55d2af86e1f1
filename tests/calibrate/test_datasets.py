"""The calibration/validation dataset loaders read the real shared data correctly.

Each test skips (with the reason) when the shared data root is absent — a fresh user machine —
and runs in CI, where ``../shared/data`` (or ``$SERVESIM_DATA_DIR``) is present. The expected
numbers below were checked by hand against the raw files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulator.calibrate import datasets as ds

ROOT = ds.shared_data_root()


def need(*parts: str) -> Path:
    """Skip the test unless ``ROOT/parts`` exists."""
    p = ROOT.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data not found: {p} (set {ds.ENV_VAR} to the shared data root)")
    return p


SILICON = ("calibration", "aiconfigurator", "silicon_sample.csv")
DSTACK_H100_16 = (*ds.DSTACK_COMPARISON, "raw_data", "8xH100SXM5-serving",
                  "nvidia-vllm-16.0qps-Llama-3.1-405B-FP8-20241109-150547.json")


# --------------------------------------------------------------------------------------------
# Data root and the missing-data error
# --------------------------------------------------------------------------------------------


def test_env_var_sets_root_and_missing_data_names_path_and_var(tmp_path, monkeypatch):
    missing = tmp_path / "no-such-root"
    monkeypatch.setenv(ds.ENV_VAR, str(missing))
    assert ds.shared_data_root() == missing
    with pytest.raises(ds.DataMissing) as exc:
        ds.silicon_points()
    msg = str(exc.value)
    assert str(missing) in msg and ds.ENV_VAR in msg and "\n" not in msg
    for loader in (ds.dstack_serving_runs, ds.rocm_mi300x_latency, ds.rocm_mi300x_throughput,
                   ds.llm_inference_bench, ds.splitwise_perf_model):
        with pytest.raises(ds.DataMissing):
            loader()
    with pytest.raises(ds.DataMissing):
        ds.aiconfigurator_kernels("h100_sxm", "gemm")


def test_default_root_is_beside_the_repository(monkeypatch):
    monkeypatch.delenv(ds.ENV_VAR, raising=False)
    repo = Path(ds.__file__).resolve().parents[2]
    root = ds.shared_data_root()
    assert root in (repo.parent / "shared" / "data", Path.cwd().parent / "shared" / "data")


# --------------------------------------------------------------------------------------------
# 1. aiconfigurator silicon points
# --------------------------------------------------------------------------------------------


def _copy_pairs(df: pd.DataFrame) -> int:
    """Pairs of rows that the dedup rule would call copies of one measurement."""
    n = 0
    key = ["engine", "system", "mode", "isl", "osl", "concurrency"]
    for _, g in df.groupby(key, dropna=False):
        if len(g) < 2:
            continue
        t = g["ttft_ms"].to_numpy()
        p = g["tpot_ms"].to_numpy()
        close = (np.abs(t[:, None] - t[None, :]) <= ds.DEDUP_TOL_MS) & (
            np.abs(p[:, None] - p[None, :]) <= ds.DEDUP_TOL_MS)
        n += int((close.sum() - len(g)) // 2)
    return n


def test_silicon_counts_match_readme_before_dedup():
    need(*SILICON)
    raw_all = ds.silicon_points(engine=None, dedup=False)
    assert len(raw_all) == 5221
    raw = ds.silicon_points(dedup=False)
    counts = raw["system"].value_counts()
    # README: "vLLM rows: H100 240, H200 336" — these are the counts before deduplication.
    assert counts["h100_sxm"] == 240
    assert counts["h200_sxm"] == 336
    assert len(raw) == 1345


def test_silicon_dedup_removes_every_copy():
    need(*SILICON)
    raw = ds.silicon_points(engine=None, dedup=False)
    dd = ds.silicon_points(engine=None)
    assert _copy_pairs(raw) > 0
    assert _copy_pairs(dd) == 0
    exact = ["engine", "system", "isl", "osl", "ttft_ms", "tpot_ms"]
    assert raw.duplicated(exact).sum() > 0
    assert dd.duplicated(exact).sum() == 0
    # Every raw row is accounted for in exactly one kept measurement.
    assert dd["n_copies"].sum() == len(raw) == 5221
    assert len(dd) == 3780
    assert (dd["n_copies"] >= 1).all()
    multi = dd[dd["n_copies"] > 1]
    assert (multi["sources"].str.count(";") >= 1).sum() > 0


def test_silicon_vllm_dedup_counts_and_coverage():
    need(*SILICON)
    v = ds.silicon_points()
    assert set(v["engine"]) == {"vllm"}
    assert len(v) == 1100
    counts = v["system"].value_counts()
    assert counts["h100_sxm"] == 225
    assert counts["h200_sxm"] == 273
    hopper = v[v["gpu"].isin(["H100-SXM", "H200-SXM"])]
    assert {"Llama-3.1-8B", "Llama-3.1-70B", "Qwen3-32B", "Qwen3-235B-A22B", "gpt-oss-120b",
            "MiniMax-M2.5", "Kimi-K2.5"} == set(hopper["model"])
    # Re-runs of one configuration on other dates are kept (different values), copies are not.
    kimi = hopper[(hopper["model"] == "Kimi-K2.5") & (hopper["isl"] == 1024)
                  & (hopper["osl"] == 1024) & (hopper["concurrency"] == 4)]
    assert len(kimi) == 2 and kimi["ttft_ms"].nunique() == 2
    # The rounded Kimi re-export merged into its full-precision copy.
    b200_kimi = v[(v["model"] == "Kimi-K2.5") & (v["system"] == "b200_sxm")]
    assert (b200_kimi["sources"].str.contains("kimi-k2.5-gap-analysis.csv")).any()
    assert (v["in_refs"]).sum() == 9


def test_silicon_column_types_and_semantics():
    need(*SILICON)
    v = ds.silicon_points()
    assert list(v.columns) == ds.SILICON_COLUMNS
    for c in ("isl", "osl", "concurrency", "batch_size", "tp", "pp", "dp", "ep", "num_gpus"):
        assert str(v[c].dtype) == "Int64", c
    for c in ("ttft_ms", "tpot_ms"):
        assert v[c].dtype == np.float64 and (v[c] > 0).all()
    assert pd.api.types.is_string_dtype(v["engine"])
    assert str(v["measured"].dtype).startswith("datetime64")
    assert set(v["mode"]) == {"agg", "disagg"}
    agg = v[(v["mode"] == "agg") & v["dp"].notna()]
    assert (agg["concurrency"] == agg["batch_size"] * agg["dp"]).all()
    assert (agg["num_gpus"] == agg["tp"] * agg["pp"] * agg["dp"]).all()
    # vllm_version comes from the column, else the image tag; only the 2025 Llama-3.1-70B and
    # gpt-oss-120b rows of the 2026-04-06 dump carry neither.
    unknown = v[v["vllm_version"].isna()]
    assert set(unknown["source"]) == {"2026-04-06.csv"}
    assert set(unknown["model"]) == {"Llama-3.1-70B", "gpt-oss-120b"}
    assert len(unknown) == 249
    minimax_h100 = v[(v["gpu"] == "H100-SXM") & (v["model"] == "MiniMax-M2.5")]
    assert set(minimax_h100["vllm_version"]) == {"0.18.0"}


# --------------------------------------------------------------------------------------------
# 2-3. benchmark_serving JSON and the dstack index
# --------------------------------------------------------------------------------------------


def test_benchmark_serving_dstack_h100_16qps_hand_checked():
    path = need(*DSTACK_H100_16)
    req, meta = ds.benchmark_serving(path)
    assert len(req) == 1000 == meta["n_requests"] == meta["num_prompts"] == meta["completed"]
    assert req["input_len"].mean() == pytest.approx(215.196)  # 215,196 input tokens / 1000
    assert req["input_len"].sum() == meta["total_input_tokens"] == 215196
    assert req["output_len"].sum() == meta["total_output_tokens"] == 120689
    assert meta["request_rate"] == 16.0
    assert meta["model_id"] == "meta-llama/Llama-3.1-405B-FP8"
    assert meta["duration"] == pytest.approx(100.667, abs=1e-3)
    first = req.iloc[0]
    assert first["input_len"] == 13 and first["output_len"] == 120 and first["n_itl"] == 119
    assert first["ttft_s"] == pytest.approx(0.1538572160006879)
    assert first["itl_s"][0] == pytest.approx(0.06354788000044209)
    assert first["e2e_s"] == pytest.approx(first["ttft_s"] + sum(first["itl_s"]))
    # 379 requests came back empty (no error, no output, ttft 0): not ok.
    assert meta["n_ok"] == 621 and meta["n_empty"] == 379 and meta["n_errors"] == 0
    # The file's summary statistics include those empty rows.
    assert req["ttft_s"].mean() * 1e3 == pytest.approx(meta["mean_ttft_ms"])
    all_itl = np.concatenate([np.asarray(x) for x in req["itl_s"] if len(x)])
    assert all_itl.mean() * 1e3 == pytest.approx(meta["mean_itl_ms"])
    ok = req[req["ok"]]
    assert (ok["ttft_s"] > 0).all() and (ok["output_len"] > 0).all()
    assert ok["ttft_s"].median() < req["ttft_s"].median() * 10


def _write(tmp_path: Path, data: object, name: str = "bench.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(data))
    return p


def test_benchmark_serving_missing_key_names_key_and_file(tmp_path):
    p = _write(tmp_path, {"input_lens": [10, 20], "output_lens": [3, 2], "itls": [[0.1, 0.1], [0.2]],
                          "request_rate": 4.0})
    with pytest.raises(ds.BadBenchmarkFile) as exc:
        ds.benchmark_serving(p)
    msg = str(exc.value)
    assert "'ttfts'" in msg and str(p) in msg and "\n" not in msg
    assert isinstance(exc.value, ValueError)


def test_benchmark_serving_malformed_files(tmp_path):
    bad_json = tmp_path / "broken.json"
    bad_json.write_text("{not json")
    with pytest.raises(ds.BadBenchmarkFile, match="not valid JSON"):
        ds.benchmark_serving(bad_json)
    with pytest.raises(ds.BadBenchmarkFile, match="expected a JSON object"):
        ds.benchmark_serving(_write(tmp_path, [1, 2, 3], "list.json"))
    uneven = {"input_lens": [1, 2], "output_lens": [1, 2], "ttfts": [0.1], "itls": [[], [0.1]]}
    with pytest.raises(ds.BadBenchmarkFile, match="'ttfts' has 1 entries"):
        ds.benchmark_serving(_write(tmp_path, uneven, "uneven.json"))
    with pytest.raises(FileNotFoundError):
        ds.benchmark_serving(tmp_path / "absent.json")


def test_benchmark_serving_minimal_user_file(tmp_path):
    data = {"input_lens": [100, 50, 7], "output_lens": [3, 1, 0], "ttfts": [0.5, 0.2, 0.0],
            "itls": [[0.1, 0.3], [], []], "errors": ["", "", "timeout"]}
    req, meta = ds.benchmark_serving(_write(tmp_path, data))
    assert list(req["input_len"]) == [100, 50, 7]
    assert req.loc[0, "e2e_s"] == pytest.approx(0.9)
    assert req.loc[0, "tpot_s"] == pytest.approx(0.2)
    assert req.loc[0, "itl_p50_s"] == pytest.approx(0.2)
    assert np.isnan(req.loc[1, "tpot_s"]) and np.isnan(req.loc[1, "itl_mean_s"])
    assert list(req["ok"]) == [True, True, False]
    assert meta["n_errors"] == 1 and meta["n_ok"] == 2 and "request_rate" not in meta


def test_dstack_serving_runs_index():
    need(*DSTACK_H100_16)
    runs = ds.dstack_serving_runs()
    assert len(runs) == 9
    assert runs["gpu"].value_counts().to_dict() == {"MI300X": 6, "H100-SXM": 3}
    for gpu, sub in runs.groupby("gpu"):
        assert sorted(sub["qps"].unique()) == [16.0, 32.0, 1000.0], gpu
    assert (runs["vllm_version_short"] == "0.6.3").all()
    assert set(runs.loc[runs["gpu"] == "H100-SXM", "vllm_version"]) == {
        "0.6.3.post2.dev308+gb489fc3c"}
    assert (runs["model"] == "meta-llama/Llama-3.1-405B-FP8").all()
    assert all(Path(p).is_file() for p in runs["path"])
    h100 = runs[runs["gpu"] == "H100-SXM"]
    assert (h100["chunked_prefill"]).all() and (h100["max_num_seqs"] == 512).all()
    failed = runs[runs["n_errors"] > 0]
    assert len(failed) == 1 and failed.iloc[0]["n_errors"] == 983
    assert failed.iloc[0]["variant"] == "no VLLM_RPC_TIMEOUT" and failed.iloc[0]["qps"] == 1000
    ok_runs = runs[runs["n_errors"] == 0]
    assert ok_runs["n_ok"].between(615, 630).all()


# --------------------------------------------------------------------------------------------
# 4. ROCm MI300X
# --------------------------------------------------------------------------------------------

ROCM_VERSIONS = {"0.6.6", "0.7.3", "0.8.3", "0.8.5", "0.9.0.1", "0.9.1", "0.10.0"}


def test_rocm_latency():
    need(*ds.ROCM_DIR, "mi300x_devdocker_latency_dedup.csv")
    lat = ds.rocm_mi300x_latency()
    assert len(lat) == 481  # 484 dedup rows minus 3 'TODO' cells
    assert set(lat["vllm_version"]) == ROCM_VERSIONS
    assert set(lat["model"]) == {"Llama-3.1-70B-Instruct-FP8-KV", "Llama-3.1-405B-Instruct-FP8-KV"}
    assert (lat["tp"] == 8).all() and (lat["gpu"] == "MI300X").all()
    assert set(lat["batch_size"]) == {1, 2, 4, 8, 16, 32, 64, 128}
    assert set(lat["input_len"]) == {128, 2048} and set(lat["output_len"]) == {2048}
    assert lat["latency_s"].between(10, 200).all()
    # Early 0.6.6 tables were in ms: 19088.59 ms -> 19.08859 s.
    ms = lat[(lat["latency_unit_in_readme"] == "ms") & (lat["model"].str.contains("70B"))
             & (lat["batch_size"] == 1) & (lat["input_len"] == 128)]
    assert ms["latency_s"].tolist() == [pytest.approx(19.08859)]
    latest = lat[lat["latest_in_version"]]
    key = ["vllm_version", "model", "tp", "batch_size", "input_len", "output_len"]
    assert not latest.duplicated(key).any()
    assert lat["label_repo_mismatch"].sum() > 0
    assert lat["carried_over"].any()
    assert set(lat["rocm"]) == {"6.3.1", "6.4.1"}
    assert lat["first_commit_date"].dt.tz is not None


def test_rocm_dedup_files_are_the_distinct_raw_values():
    raw_path = need(*ds.ROCM_DIR, "mi300x_devdocker_latency.csv")
    raw = pd.read_csv(raw_path)
    key = ["vllm_version_in_readme", "Model", "TP Size", "Batch Size", "Input", "Output",
           "MI300X Latency (sec)", "MI300X Latency (ms)"]
    assert len(raw.drop_duplicates(key)) == 484


def test_rocm_throughput():
    need(*ds.ROCM_DIR, "mi300x_devdocker_throughput_dedup.csv")
    thr = ds.rocm_mi300x_throughput()
    assert len(thr) == 118
    assert set(thr["vllm_version"]) == ROCM_VERSIONS
    assert set(zip(thr["input_len"], thr["output_len"], strict=True)) == {
        (128, 2048), (128, 4096), (500, 2000), (2048, 2048)}
    assert thr["throughput_tok_s"].between(1000, 20000).all()
    for c in ("tp", "input_len", "output_len", "num_prompts", "max_num_seqs"):
        assert thr[c].dtype == np.int64


# --------------------------------------------------------------------------------------------
# 5. LLM-Inference-Bench
# --------------------------------------------------------------------------------------------


def test_llm_inference_bench():
    need(*ds.LIB_DIR, "All_results.csv")
    lib = ds.llm_inference_bench()
    assert list(lib.columns) == ds.LIB_COLUMNS
    assert set(lib["metric"]) == {"latency_s", "throughput_tok_s", "ttft_s"}
    assert (lib["metric"] == "latency_s").sum() == 4772
    wide = ds.llm_inference_bench(framework="vllm").pivot_table(
        index=["gpu", "num_devices", "model", "batch_size", "input_len"], columns="metric",
        values="value", aggfunc="first").dropna(subset=["latency_s"])
    recon = wide.index.get_level_values("batch_size") * 2 * wide.index.get_level_values(
        "input_len") / wide["latency_s"]
    assert np.allclose(recon, wide["throughput_tok_s"], rtol=1e-4)
    h100 = ds.llm_inference_bench(gpu="H100-SXM", framework="vLLM")
    assert set(h100["gpu"]) == {"H100"} and len(h100) > 0
    assert set(ds.llm_inference_bench(gpu="mi300x")["gpu"]) == {"MI300X"}
    ttft = lib[lib["metric"] == "ttft_s"]
    assert (ttft["output_len"] == 1).all() and (ttft["input_len"] == 1024).all()


# --------------------------------------------------------------------------------------------
# 6. aiconfigurator kernel tables
# --------------------------------------------------------------------------------------------

AIC = ("calibration", "aiconfigurator", "systems", "data")


@pytest.mark.parametrize("gpu", ["h100_sxm", "H200-SXM"])
@pytest.mark.parametrize("kind", ds.AIC_KINDS)
def test_aiconfigurator_kernels_every_kind(gpu, kind):
    need(*AIC)
    df = ds.aiconfigurator_kernels(gpu, kind)
    assert len(df) > 0
    assert (df["latency_ms"] > 0).all()
    assert df["gpu"].iloc[0] in ("H100-SXM", "H200-SXM")
    assert not df["folder_version"].isna().any()


def test_aiconfigurator_kernel_semantics():
    need(*AIC)
    gemm = ds.aiconfigurator_kernels("h100_sxm", "gemm")
    assert set(gemm["vllm_version"]) == {"0.14.0", "0.19.0", "0.24.0"}
    assert {"bfloat16", "fp8"} <= set(gemm["dtype"])
    big = gemm[(gemm["m"] >= 8192) & (gemm["n"] >= 8192) & (gemm["k"] >= 8192)
               & (gemm["dtype"] == "bfloat16")]
    assert big["tflops"].between(300, 1000).all()  # H100 dense BF16 peak ~989 TFLOPS
    gen = ds.aiconfigurator_kernels("h100_sxm", "generation_attention", "0.24.0")
    kv = gen["kv_len"].to_numpy()
    assert ((kv & (kv - 1)) == 0).all()  # isl + step = 2, 4, ..., 131072
    ctx = ds.aiconfigurator_kernels("h100_sxm", "context_attention")
    assert (ctx["window_size"] >= 0).all() and str(ctx["seq_len"].dtype) == "int64"
    ar = ds.aiconfigurator_kernels("h100_sxm", "allreduce")
    assert set(ar["backend"]) == {"vllm", "nccl"}
    bf16 = ar[ar["dtype"] == "bfloat16"]
    assert (bf16["message_bytes"] == 2 * bf16["message_elems"]).all()
    assert (ar.loc[ar["backend"] == "nccl", "op_name"] == "all_reduce").all()
    moe = ds.aiconfigurator_kernels("h200_sxm", "moe", "0.19.0")
    assert set(moe["distribution"]) <= {"balanced", "power_law_1.01", "power_law_1.2"}
    collapsed = ds.aiconfigurator_kernels("h200_sxm", "moe", "0.19.0", collapse_repeats=True)
    assert len(collapsed) < len(moe)


def test_aiconfigurator_reuse_and_errors():
    need(*AIC)
    reused = ds.aiconfigurator_kernels("H100-SXM", "gemm", version="0.22.0")
    assert set(reused["reused_from"]) == {"0.24.0"} and set(reused["folder_version"]) == {"0.22.0"}
    inv = ds.aiconfigurator_inventory()
    assert {"present", "reuse", "present_and_reuse"} <= set(inv["status"])
    assert set(inv["system"]) == {"a100_sxm", "b200_sxm", "h100_sxm", "h200_sxm"}
    with pytest.raises(ValueError, match="unknown kernel kind"):
        ds.aiconfigurator_kernels("h100_sxm", "softmax")
    with pytest.raises(ValueError, match="unknown aiconfigurator GPU"):
        ds.aiconfigurator_kernels("tpu_v5", "gemm")


# --------------------------------------------------------------------------------------------
# 7. splitwise-sim and Vidur
# --------------------------------------------------------------------------------------------


def test_splitwise_perf_model():
    need("calibration", "splitwise-sim", "perf_model.csv")
    sw = ds.splitwise_perf_model()
    assert len(sw) == 1260
    assert set(sw["model"]) == {"llama2-70b", "bloom-176b"}
    assert set(sw["gpu"]) == {"A100-80G", "H100-SXM"}
    assert (sw["prompt_time_ms"] > 0).all() and (sw["token_time_ms"] > 0).all()
    # e2e ~ prompt + (out - 1) x token holds for batch 1, out 128, prompts up to 2048 tokens.
    b1 = sw[(sw["batch_size"] == 1) & (sw["output_len"] == 128) & (sw["prompt_len"] <= 2048)]
    recon = b1["prompt_time_ms"] + (b1["output_len"] - 1) * b1["token_time_ms"]
    assert np.allclose(recon, b1["e2e_time_ms"], rtol=0.02)


def test_vidur_mlp():
    need("calibration", "vidur", "data", "profiling", "compute", "h100")
    v = ds.vidur_mlp("H100-SXM", "meta-llama/Llama-2-70b-hf")
    assert {"mlp_up_proj", "mlp_down_proj", "attn_pre_proj", "attn_post_proj"} <= set(v["op"])
    assert set(v["tp"]) == {1, 2, 4, 8}
    up = v[(v["op"] == "mlp_up_proj") & (v["tp"] == 1) & (v["num_tokens"] == 4096)]
    # 2 x 4096 x 8192 x (2 x 28672) FLOPs ~ 3.85 TFLOP: a few ms on one H100.
    assert up["mean_ms"].between(3, 10).all()
    assert len(ds.vidur_mlp("a100", "Meta-Llama-3-8B")) > 0
    with pytest.raises(ValueError, match="no Vidur profile"):
        ds.vidur_mlp("h100", "no-such-model")
