"""Our own H100 kernel timings against the calibrated step model: parsing, hand-checked prices, errors.

No GPU is needed: the committed CSV (benchmarks/gpu_kernels/h100_kernels.csv) is the input. The
aiconfigurator comparison needs the shared data and skips without it.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from simulator.calibrate import datasets as ds
from simulator.calibrate import gpu_kernels as gk
from simulator.cli import app
from simulator.engine.step_time import RooflineStepTime
from simulator.errors import ConfigError
from simulator.profiles import load_gpu, load_model

MEASURE = Path(gk.REPO) / "benchmarks" / "gpu_kernels" / "measure.py"


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return gk.load_measurements(gk.DEFAULT_CSV)


@pytest.fixture(scope="module")
def cmp(df: pd.DataFrame) -> pd.DataFrame:
    out, note = gk.compare(df, with_aic=False)
    assert note == "not compared"
    return out


def _measure_module():
    """benchmarks/gpu_kernels/measure.py imported without torch (it imports torch lazily)."""
    spec = importlib.util.spec_from_file_location("gpu_kernels_measure", MEASURE)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _row(df: pd.DataFrame, **eq: object) -> pd.Series:
    sel = pd.Series(True, index=df.index)
    for c, v in eq.items():
        sel &= df[c] == v
    rows = df[sel]
    assert len(rows) == 1, eq
    return rows.iloc[0]


# ---- the committed measurements ----------------------------------------------------------------


def test_committed_csv_parses(df: pd.DataFrame) -> None:
    assert set(df["kind"]) == set(gk.KINDS)
    assert len(df) > 1000
    main = gk._kernel_rows(df)
    # bf16 and fp8 GEMMs: 20 per-rank shapes × 21 values of M each.
    for dt in ("bf16", "fp8"):
        g = main[(main["kind"] == "gemm") & (main["dtype"] == dt)]
        assert len(g) == 20 * 21
        assert g["m"].min() == 1 and g["m"].max() == 16384
    assert str(df["m"].dtype) == "Int64" and df["median_us"].dtype == float
    assert (df["median_us"] > 0).all()
    assert (df["p10_us"] <= df["median_us"]).all() and (df["median_us"] <= df["p90_us"]).all()
    meta = gk.load_sidecar(gk.DEFAULT_CSV)
    assert "H100" in meta["gpu_name"] and meta["errors"] == [] and meta["settings"]["l2_flush"] == "read"


def test_measured_shapes_are_the_model_profiles() -> None:
    """measure.py hard-codes the architectures (torch + stdlib only): they must be the profiles'."""
    mod = _measure_module()
    gpu = load_gpu("H100-SXM")
    cal = gk.calibration_for()
    for name, arch in mod.MODELS.items():
        m = load_model(name)
        assert (arch["hidden"], arch["heads"], arch["kv_heads"], arch["head_dim"], arch["inter"]) \
            == (m.hidden_size, m.num_attention_heads, m.num_kv_heads, m.head_dim,
                m.intermediate_size)
        for tp in arch["tps"]:
            rt = RooflineStepTime(m, gpu, tp=tp, weight_dtype="bf16", kv_dtype="bf16",
                                  calibration=cal)
            ours = {(s["n"], s["k"]) for s in mod.gemm_shapes() if s["model"] == name
                    and s["tp"] == tp}
            assert ours == {(int(n), int(k)) for n, k, _ in rt.gemm_classes}
    for lay in mod.attention_layouts():
        m = load_model(lay["model"])
        assert (lay["num_heads"], lay["num_kv_heads"]) == (
            m.num_attention_heads // lay["tp"], m.kv_heads_per_rank(lay["tp"]))


# ---- hand-checked prices -----------------------------------------------------------------------


def test_large_bf16_gemm_by_hand(df: pd.DataFrame, cmp: pd.DataFrame) -> None:
    """Llama-3.1-70B TP8 gate-up, M = 16384: compute-bound, so the price is
    FLOPs / (peak × eff(M) × size(N·K)) + one kernel latency."""
    c = gk.calibration_for()
    gpu = load_gpu("H100-SXM")
    r = _row(cmp, kind="gemm", dtype="bf16", model="Llama-3.1-70B", tp=8, gemm_class="gate_up",
             m=16384)
    m, n, k = 16384, 2 * 28672 // 8, 8192
    assert (int(r["n"]), int(r["k"])) == (n, k)
    flops = 2.0 * m * n * k
    eff = c.gemm_efficiency * m / (m + c.gemm_m_half) * (n * k) / (n * k + c.gemm_nk_half)
    compute = flops / (gpu.bf16_tflops * 1e12 * eff)
    stream = n * k * 2 / (gpu.mem_bandwidth_gbps * 1e9 * c.weight_bw_efficiency)
    assert stream < 0.05 * compute
    hand = compute + c.gemm_latency_us * 1e-6
    assert r["model_s"] == pytest.approx(hand, rel=1e-9)
    assert r["model_err"] == pytest.approx(hand / (r["median_us"] * 1e-6) - 1.0, rel=1e-9)
    # The measurement itself: ~800 TFLOP/s, within 10 % of the model on this GEMM.
    assert 700e12 < flops / (r["median_us"] * 1e-6) < 900e12
    assert abs(r["model_err"]) < 0.10


def test_skinny_fp8_gemm_streams_weights(cmp: pd.DataFrame) -> None:
    """M = 1: the weight bytes at HBM × weight_bw_efficiency set the price; the FP8 activation
    quantisation is reported apart (3 bytes per M × K element + its latency)."""
    c = gk.calibration_for()
    gpu = load_gpu("H100-SXM")
    r = _row(cmp, kind="gemm", dtype="fp8", model="Llama-3.1-70B", tp=1, gemm_class="down", m=1)
    n, k = 8192, 28672
    m_model = load_model("Llama-3.1-70B")
    scale = m_model.total_params_b * 1e9 / m_model.derived_total_params()
    hbm = gpu.mem_bandwidth_gbps * 1e9 * c.weight_bw_efficiency
    hand = n * k * 1.0 * scale / hbm + c.gemm_latency_us * 1e-6
    assert r["model_s"] == pytest.approx(hand, rel=1e-9)
    assert r["model_quant_s"] == pytest.approx(3.0 * k / hbm + c.fp8_act_quant_latency_us * 1e-6,
                                               rel=1e-9)


def test_decode_attention_by_hand(cmp: pd.DataFrame) -> None:
    """Batch 256 over 8192 keys, 70B TP8 (8 query heads, 1 KV head): bandwidth-bound KV read (at
    the efficiency of 256 sequence × KV-head pairs) plus the per-call latency and per-sequence
    cost, one layer."""
    c = gk.calibration_for()
    gpu = load_gpu("H100-SXM")
    r = _row(cmp, kind="decode_attention", backend="cudnn", model="Llama-3.1-70B", tp=8,
             batch=256, kv_len=8192)
    pairs = 256 * 8192
    kv_bytes = 2 * 1 * 128 * 2  # K and V, 1 KV head, head_dim 128, bf16
    par = 256 * 1
    eff = c.kv_bw_efficiency * par / (par + c.attn_par_half)
    bw = pairs * kv_bytes / (gpu.mem_bandwidth_gbps * 1e9 * eff)
    flops = pairs * 4 * 8 * 128 / (gpu.bf16_tflops * 1e12 * c.attn_efficiency)
    hand = max(bw, flops) + (c.attn_latency_us + c.attn_per_seq_us * 256) * 1e-6
    assert r["model_s"] == pytest.approx(hand, rel=1e-9)


def test_prefill_attention_matches_step_model(cmp: pd.DataFrame) -> None:
    """The per-layer price is the step model's attention component / layers, for any batch."""
    r = _row(cmp, kind="prefill_attention", backend="flash", model="Llama-3.1-8B", tp=1, batch=4,
             kv_len=4096)
    rt = RooflineStepTime(load_model("Llama-3.1-8B"), load_gpu("H100-SXM"), tp=1,
                          weight_dtype="bf16", kv_dtype="bf16", calibration=gk.calibration_for())
    one = rt.breakdown_totals(4096, 1, 0, [(4096, 0)])
    four = rt.breakdown_totals(4 * 4096, 4, 0, [(4096, 0)] * 4)
    assert r["model_s"] == pytest.approx(four.attention / 32, rel=1e-12)
    assert four.attention > 3.9 * one.attention - 4 * 32 * 13e-6


def test_gemm_class_must_be_a_model_class() -> None:
    rt = RooflineStepTime(load_model("Llama-3.1-8B"), load_gpu("H100-SXM"), tp=1,
                          weight_dtype="bf16", kv_dtype="bf16", calibration=gk.calibration_for())
    with pytest.raises(ConfigError, match="not a per-rank GEMM class"):
        gk.gemm_class_seconds(rt, 1000, 4096, 16)
    # The view leaves the model itself untouched.
    assert len(rt.gemm_classes) == 4 and rt.num_layers == 32


def test_summary_per_class(cmp: pd.DataFrame) -> None:
    s = gk.summary(cmp)
    assert list(s["cls"]) == [label for label, _ in gk.CLASSES]
    bf16 = s.iloc[0]
    assert bf16["n"] == 420 and bf16["model_median"] < 10.0  # the headline: bf16 GEMMs agree
    assert all(math.isnan(v) for v in s["aic_median"])  # with_aic=False
    by = gk.summary(cmp, ["regime"])
    assert set(by["regime"]) == set(gk.REGIMES)


# ---- aiconfigurator (shared data) ---------------------------------------------------------------


def test_aiconfigurator_at_the_same_kernel(df: pd.DataFrame) -> None:
    try:
        table = ds.aiconfigurator_kernels("H100-SXM", "gemm", gk.AIC_VERSION, collapse_repeats=True)
    except ds.DataMissing as e:
        pytest.skip(f"shared data not found: {e}")
    rows = gk._kernel_rows(df)
    rows = rows[(rows["kind"] == "gemm") & (rows["model"] == "Llama-3.1-8B")
                & (rows["gemm_class"] == "qkv") & (rows["m"] == 64)].reset_index(drop=True)
    sec, exact, note = gk.aic_seconds(rows)
    assert note == ""
    for i, r in rows.iterrows():
        dt = "bfloat16" if r["dtype"] == "bf16" else "fp8"
        t = table[(table["dtype"] == dt) & (table["m"] == 64) & (table["n"] == 6144)
                  & (table["k"] == 4096)]
        assert exact[i] and sec[i] == pytest.approx(float(t["latency_ms"].iloc[0]) * 1e-3)
    # An off-grid shape (70B TP1 gate-up, N = 57344) is scaled from the nearest grid point.
    r = gk._kernel_rows(df)
    r = r[(r["kind"] == "gemm") & (r["dtype"] == "bf16") & (r["model"] == "Llama-3.1-70B")
          & (r["tp"] == 1) & (r["gemm_class"] == "gate_up") & (r["m"] == 4096)]
    sec, exact, _ = gk.aic_seconds(r.reset_index(drop=True))
    assert not exact[0] and np.isfinite(sec[0])


# ---- bad input: one line, no traceback ----------------------------------------------------------


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "k.csv"
    p.write_text(text)
    return p


def _good_lines() -> list[str]:
    return gk.DEFAULT_CSV.read_text().splitlines()[:5]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(gk.BadKernelCsv, match="not found"):
        gk.load_measurements(tmp_path / "nope.csv")


def test_missing_column(tmp_path: Path) -> None:
    lines = _good_lines()
    lines[0] = lines[0].replace("median_us", "med_us")
    with pytest.raises(gk.BadKernelCsv, match=r"missing column\(s\) median_us") as e:
        gk.load_measurements(_write(tmp_path, "\n".join(lines)))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("field,value,match", [
    ("median_us", "fast", r"k\.csv:3: median_us 'fast' is not a positive number"),
    ("median_us", "-2", r"k\.csv:3: median_us '-2' is not a positive number"),
    ("kind", "gemv", r"k\.csv:3: unknown kind 'gemv'"),
    ("m", "", r"k\.csv:3: gemm needs a positive integer m"),
    ("dtype", "fp16", r"k\.csv:3: gemm dtype 'fp16'"),
])
def test_bad_value_names_the_line(tmp_path: Path, field: str, value: str, match: str) -> None:
    header = gk.COLUMNS
    row = {c: "" for c in header}
    row.update(kind="gemm", dtype="bf16", backend="F.linear", model="Llama-3.1-8B", tp="1",
               gemm_class="qkv", m="16", n="6144", k="4096", median_us="20.0")
    bad = {**row, field: value}
    text = "\n".join([",".join(header), ",".join(row[c] for c in header),
                      ",".join(bad[c] for c in header)])
    with pytest.raises(gk.BadKernelCsv, match=match) as e:
        gk.load_measurements(_write(tmp_path, text))
    assert "\n" not in str(e.value)


def test_cli_bad_csv_is_one_line(tmp_path: Path) -> None:
    p = _write(tmp_path, "kind,dtype\ngemm,bf16\n")
    res = CliRunner().invoke(app, ["gpu-kernels", "--csv", str(p)])
    assert res.exit_code == 2
    out = res.output.strip()
    assert out.startswith("error: ") and "missing column" in out and len(out.splitlines()) == 1
    assert "Traceback" not in out


def test_cli_writes_report(tmp_path: Path) -> None:
    out = tmp_path / "gpu_kernels.md"
    res = CliRunner().invoke(app, ["gpu-kernels", "--write", str(out)])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert "## Summary per kernel class" in text and "GEMM bf16 (F.linear)" in text
    assert "## What this says" in text and "Run-to-run spread" in text
