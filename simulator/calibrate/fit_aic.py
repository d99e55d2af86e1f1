"""H100-SXM and H200-SXM step-time fits on NVIDIA's aiconfigurator kernel tables.

Reads: aiconfigurator's measured vLLM kernel tables (``datasets.aiconfigurator_kernels``:
``calibration/aiconfigurator`` under the shared data folder, its ``SOURCE.txt`` naming the
repository and commit) — GEMM, context and generation attention, all-reduce and fused-MoE rows per
GPU and vLLM version folder — and, for the CPU overheads the kernel tables do not hold,
LLM-Inference-Bench's H100 vLLM static-batch latencies (``datasets.llm_inference_bench``:
``calibration/llm-inference-bench``). Kernel rows are matched at the layer shapes of the models in
``hardware_profiles/models`` (:func:`gemm_shapes`, :func:`attention_heads`, :func:`moe_shapes`).

**H100-SXM, H200-SXM** — kernel tables of aiconfigurator (vLLM 0.24.0, the newest version with
every table on both GPUs), each kernel class on its own rows, at the layer shapes of the models in
``hardware_profiles/models`` (TP 1–8):
GEMMs (bf16 and fp8 per-tensor, M = 1…16384) → ``gemm_efficiency``, ``gemm_efficiency_fp8``,
``gemm_m_half``, ``gemm_latency_us`` and, from the memory-bound small-M rows,
``weight_bw_efficiency``; prefill (context) and decode (generation) attention, bf16 and fp8 KV →
``attn_efficiency``, ``attn_kv_half``, ``kv_bw_efficiency``, ``kv_bw_efficiency_fp8``,
``attn_latency_us``; vLLM custom all-reduce (CUDA-graph variant, 2/4/8 GPUs) →
``allreduce_latency_us``, ``allreduce_bw_efficiency``; fused MoE (bf16 and fp8 block-scaled,
balanced routing) → ``moe_efficiency``, ``moe_bw_efficiency`` (and their ``_fp8`` twins),
``moe_latency_us``. With :data:`SIZED_GEMMS`, also the GEMM size law (``gemm_nk_half``,
``gemm_nk_half_fp8``) and FP8 activation quantisation (``fp8_act_quant_latency_us``); with
:data:`FP4_MOE`, gpt-oss's MXFP4 MoE rows → ``moe_*_fp4``; with
:data:`BALANCED_MOE_TOUCHES_ALL`, a balanced MoE row touches min(E, T·k) experts.
Kernel tables hold no CPU time, so ``step_overhead_us``, ``per_seq_overhead_us`` and
``layer_overhead_us`` are then fitted, with the kernel coefficients fixed, on LLM-Inference-Bench
H100 vLLM static-batch latencies (Llama-3-8B TP1/2/4, Llama-3-70B TP4, Llama-2-70B TP4), each
batch replayed through the real scheduler. H200 has no end-to-end source outside the validation
suites, so it reuses H100's three overheads (the provenance says so). That benchmark ran a
pre-V1 vLLM (2024): with ``fit.V1_OVERHEAD_PRIOR`` its overheads are written as family
``fit.V0_FAMILY`` (for simulating vLLM < 0.8), and the vLLM-0.24 files take the V1 prior
``fit.V1_OVERHEADS`` for the CPU terms instead (a cited prior, not a fit: no V1-era end-to-end
source outside the validation suites exists; :mod:`simulator.calibrate.fit` does that split).

**H100-SXM, H200-SXM, older kernel families** (:data:`OLDER_KERNEL_VERSIONS`: families ``0.14``
and ``0.19``) — the same fit, step for step, on aiconfigurator's vLLM 0.14.0 and 0.19.0 tables
(the LLM-Inference-Bench overhead fit is redone with those kernels for ``layer_overhead_us``;
H200 reuses that fit's H100 overheads), always with the V1 CPU prior; their pre-V1 overheads
are not written (``V0_FAMILY`` keeps the 0.24 kernels). Each of these folders holds every
table the fit reads on both GPUs, but: no MXFP4 MoE rows before 0.24.0 on H100 and before
0.18.0 on H200, so ``moe_*_fp4`` come from the nearest newer folder that has them
(:func:`fp4_moe_version`: H100 0.14 and 0.19 → 0.24.0, H200 0.14 → 0.18.0); and H200's
0.19.0 context-attention table is unphysical (it implies 5-32 PFLOP/s of bf16 attention), so
that family's prefill attention is fitted on H200's 0.18.0 table (:data:`TABLE_SUBSTITUTES`).
Each substitution is named in the file's ``method`` and its table listed in ``data``. These
families exist so that a measurement taken on an older vLLM can be simulated with that era's
kernels (``servesim validate`` picks them by the silicon row's recorded vLLM version);
``step_time.calibration: auto`` still resolves to the newest (0.24).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from simulator.calibrate import datasets as ds
from simulator.calibrate.fit_core import (
    STATIC_MAX_BATCHED_TOKENS,
    FitResult,
    GpuFit,
    Param,
    StaticCase,
    _commit,
    _make_case,
    _rounded,
    _StaticPredictor,
    _today,
    fit_params,
    residual_stats,
)
from simulator.engine.step_time import (
    US,
    allreduce_seconds,
    decode_attention_seconds,
    gemm_seconds,
    prefill_attention_seconds,
    touched_experts,
)
from simulator.profiles import (
    BYTES_PER_PARAM,
    Calibration,
    CalibrationProfile,
    CalibrationProvenance,
    GpuProfile,
    ModelProfile,
    list_models,
    load_gpu,
)

#: aiconfigurator vLLM version folder fitted per GPU (newest with every table on both GPUs): the
#: default family (``step_time.calibration: auto`` picks the newest).
KERNEL_VERSION = {"H100-SXM": "0.24.0", "H200-SXM": "0.24.0"}
#: Older aiconfigurator vLLM version folders also fitted per GPU, each written as its own family
#: (``<gpu>__vllm-0.14.yaml``, ``__vllm-0.19.yaml``) with the same method and the same V1 CPU prior,
#: so that a measurement taken on an older vLLM can be simulated with that era's kernels
#: (``servesim validate`` picks the family by the row's recorded vLLM version). Every table the fit
#: reads exists in these folders on both GPUs, except the MXFP4 fused-MoE rows: those come from the
#: nearest newer folder that has them (:func:`fp4_moe_version`; named in the file's provenance).
OLDER_KERNEL_VERSIONS: dict[str, tuple[str, ...]] = {"H100-SXM": ("0.14.0", "0.19.0"),
                                                     "H200-SXM": ("0.14.0", "0.19.0")}
#: Kernel tables that are not fitted on, (gpu, kind, version) → (version used instead, why). The
#: substitute is the same GPU's table of the same kind from the nearest version with a physical one.
TABLE_SUBSTITUTES: dict[tuple[str, str, str], tuple[str, str]] = {
    ("H200-SXM", "context_attention", "0.19.0"): (
        "0.18.0", "its bf16 rows at the served head layouts imply a median 5.3 PFLOP/s (up to "
                  "32 PFLOP/s) of causal attention for prompts >= 4096 tokens, 5-30x the GPU's "
                  "989 TFLOP/s bf16 peak, where the 0.14.0, 0.18.0, 0.22.0 and 0.24.0 tables of "
                  "H200 and the 0.19.0 table of H100 imply 540-660 TFLOP/s; 0.18.0 runs the same "
                  "vllm_flash_attn kernel"),
}

#: Fit the dense-GEMM size law and the FP8 activation-quantisation kernel (``gemm_nk_half*``,
#: ``fp8_act_quant*``); False keeps the single-efficiency GEMM model.
SIZED_GEMMS = True
#: Fit the dense GEMMs on the row counts vLLM runs them at (:func:`vllm_padded_m`), leaving out
#: the tables' "M = 2^k + 1" rows (the first row past a tile boundary): vLLM's CUTLASS FP8 kernel
#: runs those 20–100 % slower than the aligned M below them (bf16 cuBLAS does not), and with them
#: in the fit the FP8 GEMMs of M 512–16384 — the decode and prefill steps of hundreds of running
#: sequences — came out 15–25 % too slow (H200 0.24), as our own H100 FP8 timings also found
#: (benchmarks/gpu_kernels.md: +20 %).
PADDED_M_ONLY = True
#: Fit the decode-attention kernel's parallelism law (``attn_par_half``: bandwidth efficiency
#: grows with sequences × KV heads per rank); False keeps one efficiency per KV dtype. Without it
#: the H200 0.14 fit left large decode batches with 4–8 KV heads per rank 25–40 % too slow and
#: those with one KV head (TP8) 25 % too fast.
DECODE_PARALLELISM = True
#: Fit ``moe_*_fp4`` on the MXFP4 (W4A16) fused-MoE rows; False leaves 4-bit experts on the bf16
#: MoE coefficients.
FP4_MOE = True

#: Count the experts a "balanced" MoE table row touches as min(E, T·k) (how the table routes);
#: False uses the random-routing expectation of the step model.
BALANCED_MOE_TOUCHES_ALL = True

# LLM-Inference-Bench models → servesim profiles (same architecture; Llama-3 and 3.1 differ only in
# RoPE scaling and context length, which the step model does not see) and their weight dtype.
LIB_MODELS = {
    "meta-llama/Meta-Llama-3-8B": ("Llama-3.1-8B", "bf16"),
    "meta-llama/Meta-Llama-3-70B": ("Llama-3.1-70B", "bf16"),
    "meta-llama/Llama-2-70b-hf": ("Llama-2-70B", "fp16"),
}


def _tps(m: ModelProfile) -> list[int]:
    return [t for t in (1, 2, 4, 8) if m.num_attention_heads % t == 0]


def gemm_shapes() -> list[tuple[int, int]]:
    """Per-rank (N, K) of the dense GEMMs of every model profile at TP 1, 2, 4, 8."""
    out: set[tuple[int, int]] = set()
    for m in list_models():
        h, hd = m.hidden_size, m.head_dim
        for tp in _tps(m):
            q = m.num_attention_heads * hd // tp
            kv = max(1, m.num_kv_heads // tp) * hd
            out.add((q + 2 * kv, h))
            out.add((h, q))
            mlps = m.num_shared_experts + (0 if m.is_moe else 1)
            if mlps:
                inter = m.intermediate_size * mlps // tp
                out.add((2 * inter, h))
                out.add((h, inter))
    return sorted(out)


def attention_heads() -> set[tuple[int, int, int]]:
    """Per-rank (query heads, KV heads, head_dim) of every model profile at TP 1, 2, 4, 8."""
    out: set[tuple[int, int, int]] = set()
    for m in list_models():
        for tp in _tps(m):
            out.add((m.num_attention_heads // tp, max(1, m.num_kv_heads // tp), m.head_dim))
    return out


def moe_shapes() -> set[tuple[int, int, int, int, int]]:
    """(hidden, expert width, top-k, experts, TP) of every MoE model profile at TP 1, 2, 4, 8."""
    return {(m.hidden_size, m.intermediate_size, m.num_experts_per_token, m.num_experts, tp)
            for m in list_models() if m.is_moe for tp in _tps(m)}


def _snap(v: int, grid: np.ndarray) -> int:
    return int(grid[np.argmin(np.abs(np.log(grid) - math.log(v)))])


def _kernels(gpu: str, kind: str, version: str, used: list[str]) -> pd.DataFrame:
    df = ds.aiconfigurator_kernels(gpu, kind, version, collapse_repeats=True)
    if kind == "allreduce":
        df = df[df["backend"] == "vllm"]
    for p in sorted(df["source_path"].unique()):
        if p not in used:
            used.append(str(p))
    return df


def vllm_padded_m(m: pd.Series) -> pd.Series:
    """Whether GEMM row counts ``m`` are ones vLLM V1 runs its linear layers at: its CUDA-graph
    capture sizes (1, 2, 4, then multiples of 8: decode batches and mixed batches up to the
    largest captured size are padded up to one) and a loaded server's prefill steps, which fill
    the token budget (a multiple of 8 by default)."""
    return m.isin([1, 2, 4]) | (m % 8 == 0)


def fit_gemm(gpu: GpuProfile, df: pd.DataFrame, start: Calibration,
             sized: bool | None = None) -> FitResult:
    """Dense GEMMs, bf16 and fp8 (per-tensor), at the served models' shapes, M ≤ 16384; with
    ``sized`` (default ``SIZED_GEMMS``), also the N·K size law and the FP8 activation-quantisation
    kernel."""
    if sized is None:
        sized = SIZED_GEMMS
    grid_n = np.array(sorted(df["n"].unique()), dtype=float)
    grid_k = np.array(sorted(df["k"].unique()), dtype=float)
    shapes = {(_snap(n, grid_n), _snap(k, grid_k)) for n, k in gemm_shapes()}
    sel = df[df["dtype"].isin(["bfloat16", "fp8"]) & (df["m"] <= 16384)
             & pd.Series(list(zip(df["n"], df["k"], strict=True)), index=df.index).isin(shapes)]
    if PADDED_M_ONLY:
        sel = sel[vllm_padded_m(sel["m"])]
    sel = sel.sort_values(["dtype", "n", "k", "m"], kind="stable")
    m = sel["m"].to_numpy(float)
    nk = (sel["n"] * sel["k"]).to_numpy(float)
    fp8 = (sel["dtype"] == "fp8").to_numpy()
    wbytes = nk * np.where(fp8, 1.0, 2.0)
    peak = np.where(fp8, (gpu.fp8_tflops or gpu.bf16_tflops) * 1e12, gpu.bf16_tflops * 1e12)
    hbm = gpu.mem_bandwidth_gbps * 1e9

    k = sel["k"].to_numpy(float)

    def predict(c: Calibration) -> np.ndarray:
        # The same terms as RooflineStepTime.sized_gemm_seconds, one table row = one GEMM.
        size = nk / (nk + np.where(fp8, c.gemm_nk_half_fp8, c.gemm_nk_half))
        t = np.asarray(gemm_seconds(
            m, 2 * m * nk, wbytes, peak_flops=peak,
            efficiency=np.where(fp8, c.gemm_efficiency_fp8, c.gemm_efficiency) * size,
            m_half=c.gemm_m_half, hbm_bps=hbm, bw_efficiency=c.weight_bw_efficiency,
            latency_s=c.gemm_latency_us * US))
        if c.fp8_act_quant:
            t = t + np.where(fp8, 3.0 * m * k / (hbm * c.weight_bw_efficiency)
                             + c.fp8_act_quant_latency_us * US, 0.0)
        return t

    params = [Param("gemm_efficiency", 0.2, 1.0), Param("gemm_efficiency_fp8", 0.2, 1.0),
              Param("gemm_m_half", 1.0, 2048.0), Param("gemm_latency_us", 0.1, 50.0),
              Param("weight_bw_efficiency", 0.2, 1.0)]
    if sized:
        # NOTE: the tables include vLLM's per-token activation quantisation in the FP8 rows
        # (CutlassFP8ScaledMMLinearKernel.apply_weights), and FP8 throughput falls much faster with
        # the weight-matrix size than BF16 does; one efficiency and an M law alone leave the large
        # FP8 shapes ~40 % too slow and the small ones ~35 % too fast.
        start = start.model_copy(update={"fp8_act_quant": True, "gemm_nk_half": 1e6,
                                         "gemm_nk_half_fp8": 2e6, "fp8_act_quant_latency_us": 2.0})
        params += [Param("gemm_nk_half", 1e3, 1e9), Param("gemm_nk_half_fp8", 1e3, 1e9),
                   Param("fp8_act_quant_latency_us", 0.0, 20.0)]
    res = fit_params(params, start, predict, sel["latency_ms"].to_numpy(float) * 1e-3, tag="gemm")
    if sized:
        res.values["fp8_act_quant"] = True
    return res


def fit_attention(gpu: GpuProfile, ctx: pd.DataFrame, gen: pd.DataFrame,
                  start: Calibration) -> FitResult:
    """Prefill (context) and decode (generation) flash attention, bf16 and fp8 KV, full attention,
    at the served models' per-rank head layouts; one latency shared by both (one kernel per layer)."""
    heads = attention_heads()

    def pick(df: pd.DataFrame) -> pd.DataFrame:
        key = pd.Series(list(zip(df["num_heads"], df["num_kv_heads"], df["head_dim"],
                                 strict=True)), index=df.index)
        return df[(df["window_size"] == 0) & (df["attn_dtype"] == "bfloat16")
                  & df["kv_cache_dtype"].isin(["bfloat16", "fp8"]) & key.isin(heads)]

    c_sel = pick(ctx)
    c_sel = c_sel[c_sel["seq_len"] >= 16].sort_values(
        ["kv_cache_dtype", "num_heads", "num_kv_heads", "head_dim", "batch_size", "seq_len"],
        kind="stable")
    g_sel = pick(gen)
    g_sel = g_sel[g_sel["batch_size"] <= 1024].sort_values(
        ["kv_cache_dtype", "num_heads", "num_kv_heads", "head_dim", "batch_size", "kv_len"],
        kind="stable")
    bf16 = gpu.bf16_tflops * 1e12
    hbm = gpu.mem_bandwidth_gbps * 1e9

    def arrays(df: pd.DataFrame, n_col: str) -> dict[str, np.ndarray]:
        b = df["batch_size"].to_numpy(float)
        s = df[n_col].to_numpy(float)
        kvb = np.where(df["kv_cache_dtype"] == "fp8", 1.0, 2.0)
        return {"b": b, "s": s, "fp8": (df["kv_cache_dtype"] == "fp8").to_numpy(),
                "fpp": 4.0 * df["num_heads"].to_numpy(float) * df["head_dim"].to_numpy(float),
                "kvpt": 2.0 * df["num_kv_heads"].to_numpy(float) * df["head_dim"].to_numpy(float)
                * kvb, "kvh": df["num_kv_heads"].to_numpy(float)}

    ca, ga = arrays(c_sel, "seq_len"), arrays(g_sel, "kv_len")
    n_c = len(c_sel)

    def predict(c: Calibration) -> np.ndarray:
        lat = c.attn_latency_us * US
        kve = np.where(ca["fp8"], c.kv_bw_efficiency_fp8, c.kv_bw_efficiency)
        b, s = ca["b"], ca["s"]
        t_c = lat + c.attn_per_seq_us * US * b + prefill_attention_seconds(
            b * s * (s + 1) / 2, b * s, b * s, flops_per_pair=ca["fpp"],
            kv_bytes_per_token=ca["kvpt"], peak_flops=bf16,
            efficiency=c.attn_efficiency, kv_half=c.attn_kv_half, hbm_bps=hbm,
            kv_bw_efficiency=kve)
        kvg = np.where(ga["fp8"], c.kv_bw_efficiency_fp8, c.kv_bw_efficiency)
        if c.attn_par_half > 0:  # the decode kernel's parallelism law (RooflineStepTime)
            par = ga["b"] * ga["kvh"]
            kvg = kvg * par / (par + c.attn_par_half)
        t_g = lat + c.attn_per_seq_us * US * ga["b"] + decode_attention_seconds(
            ga["b"] * ga["s"], flops_per_pair=ga["fpp"],
            kv_bytes_per_token=ga["kvpt"], peak_flops=bf16,
            efficiency=c.attn_efficiency, hbm_bps=hbm, kv_bw_efficiency=kvg)
        return np.concatenate([t_c, t_g])

    meas = np.concatenate([c_sel["latency_ms"].to_numpy(float),
                           g_sel["latency_ms"].to_numpy(float)]) * 1e-3
    # Each table counts as much as the other, whatever its row count.
    w = np.concatenate([np.full(n_c, 0.5 / max(n_c, 1)),
                        np.full(len(g_sel), 0.5 / max(len(g_sel), 1))])
    params = [Param("attn_efficiency", 0.1, 1.0), Param("attn_kv_half", 1.0, 8192.0),
              Param("kv_bw_efficiency", 0.1, 1.0), Param("kv_bw_efficiency_fp8", 0.1, 1.0),
              Param("attn_latency_us", 0.5, 100.0), Param("attn_per_seq_us", 0.0, 1.0)]
    if DECODE_PARALLELISM:
        start = start.model_copy(update={"attn_par_half": start.attn_par_half or 32.0})
        params.append(Param("attn_par_half", 0.1, 4096.0))
    res = fit_params(params, start, predict, meas, weights=w, tag="attention")
    res.residuals.update(residual_stats(res.rel_errors[:n_c], "prefill_attention"))
    res.residuals.update(residual_stats(res.rel_errors[n_c:], "decode_attention"))
    return res


def fit_allreduce(gpu: GpuProfile, df: pd.DataFrame, start: Calibration) -> FitResult:
    """vLLM custom all-reduce (the CUDA-graph variant decode runs), 2/4/8 GPUs, messages from one
    token of the smallest hidden size to a 16k-token prefill chunk of the largest.

    One (latency, bandwidth-efficiency) pair over all group sizes (the fallback for sizes the
    tables lack), then one pair per group size: the ring formula alone misses how the measured
    curves differ by size (on the vLLM 0.19 and 0.24 tables, 8 GPUs, 4–512 MiB messages: 23–25 %
    slow with the shared pair, 4–5 % with its own)."""
    sel = df[(df["kernel_source"] == "vLLM_custom_graph") & (df["message_bytes"] >= 4096)
             & (df["message_bytes"] <= 2**29)].sort_values(["num_gpus", "message_bytes"])
    nbytes = sel["message_bytes"].to_numpy(float)
    tps = sel["num_gpus"].to_numpy(int)
    meas = sel["latency_ms"].to_numpy(float) * 1e-3
    link = gpu.link_bandwidth_gbps * 1e9
    params = [Param("allreduce_latency_us", 0.1, 100.0), Param("allreduce_bw_efficiency", 0.05, 1.0)]

    def predictor(i: np.ndarray) -> Callable[[Calibration], np.ndarray]:
        def predict(c: Calibration) -> np.ndarray:
            out = np.empty(int(i.sum()))
            for tp in np.unique(tps[i]):
                j = tps[i] == tp
                out[j] = allreduce_seconds(nbytes[i][j], int(tp), link_bps=link,
                                           latency_s=c.allreduce_latency_us * US,
                                           bw_efficiency=c.allreduce_bw_efficiency)
            return out
        return predict

    shared = fit_params(params, start, predictor(np.ones(len(sel), bool)), meas, tag="allreduce")
    values: dict[str, Any] = dict(shared.values)
    values["allreduce_latency_us_by_tp"] = {}
    values["allreduce_bw_efficiency_by_tp"] = {}
    rel = np.empty(len(sel))
    residuals = {f"allreduce_shared_{k[len('allreduce_'):]}": v
                 for k, v in shared.residuals.items()}
    own_start = start.model_copy(update=shared.values)
    for tp in np.unique(tps):
        i = tps == tp
        r = fit_params(params, own_start, predictor(i), meas[i], tag=f"allreduce_tp{tp}")
        values["allreduce_latency_us_by_tp"][int(tp)] = r.values["allreduce_latency_us"]
        values["allreduce_bw_efficiency_by_tp"][int(tp)] = r.values["allreduce_bw_efficiency"]
        rel[i] = r.rel_errors
        residuals.update(r.residuals)
    residuals.update(residual_stats(rel, "allreduce"))
    return FitResult(values, residuals, rel)


def _moe_rows(df: pd.DataFrame, dtypes: Sequence[str]) -> pd.DataFrame:
    """Balanced-routing, no-EP fused-MoE rows of ``dtypes`` at the served MoE models' shapes."""
    key = pd.Series(list(zip(df["hidden_size"], df["inter_size"], df["topk"], df["num_experts"],
                             df["moe_tp"], strict=True)), index=df.index)
    return df[df["dtype"].isin(list(dtypes)) & (df["distribution"] == "balanced")
              & (df["moe_ep"] == 1) & key.isin(moe_shapes())].sort_values(
        ["dtype", "hidden_size", "inter_size", "topk", "num_experts", "moe_tp", "num_tokens"],
        kind="stable")


def _moe_arrays(sel: pd.DataFrame) -> dict[str, np.ndarray]:
    T = sel["num_tokens"].to_numpy(float)
    k = sel["topk"].to_numpy(float)
    E = sel["num_experts"].to_numpy(float)
    expert = 3.0 * sel["hidden_size"].to_numpy(float) * sel["inter_size"].to_numpy(float) \
        / sel["moe_tp"].to_numpy(float)
    # NOTE: aiconfigurator's "balanced" distribution spreads the T·k routed tokens evenly, so a
    # row touches min(E, T·k) experts (the tables' latency grows linearly in T up to T·k = E and
    # is flat after), not the E·(1 − (1 − k/E)^T) of random routing the step model uses.
    touched = (np.minimum(E, T * k) if BALANCED_MOE_TOUCHES_ALL
               else np.asarray(touched_experts(E, k, T)))
    return {"T": T, "k": k, "expert": expert, "touched": touched, "m": k * T / touched}


def fit_moe(gpu: GpuProfile, df: pd.DataFrame, start: Calibration) -> FitResult:
    """Fused-MoE layers, balanced routing, no expert parallelism, at the served MoE models' shapes:
    bf16 (Triton) and fp8 block-scaled (Triton; the FP8 checkpoints of Qwen3 and MiniMax), one
    latency and one ``moe_m_half`` shared. With the dense fit's ``gemm_m_half`` instead, the fp8
    rows ran 20–28 % fast at prefill sizes (6k–16k tokens) and 9–20 % slow at decode sizes."""
    sel = _moe_rows(df, ["bfloat16", "fp8_block"])
    a = _moe_arrays(sel)
    fp8 = (sel["dtype"] == "fp8_block").to_numpy()
    peak = np.where(fp8, (gpu.fp8_tflops or gpu.bf16_tflops) * 1e12, gpu.bf16_tflops * 1e12)
    wbytes = a["touched"] * a["expert"] * np.where(fp8, 1.0, 2.0)
    hbm = gpu.mem_bandwidth_gbps * 1e9

    def predict(c: Calibration) -> np.ndarray:
        return np.asarray(gemm_seconds(
            a["m"], 2.0 * a["T"] * a["k"] * a["expert"], wbytes, peak_flops=peak,
            efficiency=np.where(fp8, c.moe_efficiency_fp8, c.moe_efficiency),
            m_half=c.moe_m_half or c.gemm_m_half, hbm_bps=hbm,
            bw_efficiency=np.where(fp8, c.moe_bw_efficiency_fp8, c.moe_bw_efficiency),
            latency_s=c.moe_latency_us * US))

    params = [Param("moe_efficiency", 0.05, 1.0), Param("moe_efficiency_fp8", 0.05, 1.0),
              Param("moe_bw_efficiency", 0.05, 1.0), Param("moe_bw_efficiency_fp8", 0.05, 1.0),
              Param("moe_latency_us", 0.5, 200.0), Param("moe_m_half", 0.5, 2000.0)]
    start = start.model_copy(update={"moe_m_half": start.moe_m_half or start.gemm_m_half})
    return fit_params(params, start, predict, sel["latency_ms"].to_numpy(float) * 1e-3, tag="moe")


def fit_moe_fp4(gpu: GpuProfile, df: pd.DataFrame, start: Calibration) -> FitResult:
    """MXFP4 weight-only (W4A16) fused-MoE layers — gpt-oss's Triton kernel — at the served
    shapes, balanced routing: ``moe_*_fp4`` with their own latency (~40 us per call against ~30 us
    for the bf16/fp8 kernels; a shared one drags the fp8 bandwidth efficiency to its bound) and
    their own ``moe_m_half_fp4``, math at the BF16 peak. With the dense ``gemm_m_half`` the fit
    was 13–47 % slow at decode sizes (16–512 tokens) and 19–37 % fast at prefill sizes (≥ 6k
    tokens), its efficiency pinned at the 1.0 bound: gpt-oss TPOT over- and long-prompt TTFT
    under-predicted."""
    sel = _moe_rows(df, ["w4a16_mxfp4"])
    a = _moe_arrays(sel)
    wbytes = a["touched"] * a["expert"] * BYTES_PER_PARAM["fp4"]
    hbm = gpu.mem_bandwidth_gbps * 1e9

    def predict(c: Calibration) -> np.ndarray:
        return np.asarray(gemm_seconds(
            a["m"], 2.0 * a["T"] * a["k"] * a["expert"], wbytes, peak_flops=gpu.bf16_tflops * 1e12,
            efficiency=c.moe_efficiency_fp4 or c.moe_efficiency,
            m_half=c.moe_m_half_fp4 or c.moe_m_half or c.gemm_m_half,
            hbm_bps=hbm, bw_efficiency=c.moe_bw_efficiency_fp4 or c.moe_bw_efficiency,
            latency_s=(c.moe_latency_us_fp4 or c.moe_latency_us) * US))

    start = start.model_copy(update={"moe_efficiency_fp4": 0.3, "moe_bw_efficiency_fp4": 0.5,
                                     "moe_latency_us_fp4": 40.0,
                                     "moe_m_half_fp4": start.gemm_m_half})
    params = [Param("moe_efficiency_fp4", 0.05, 1.0), Param("moe_bw_efficiency_fp4", 0.05, 1.0),
              Param("moe_latency_us_fp4", 0.5, 200.0), Param("moe_m_half_fp4", 0.5, 2000.0)]
    return fit_params(params, start, predict, sel["latency_ms"].to_numpy(float) * 1e-3,
                      tag="moe_fp4")


def lib_cases(gpu: GpuProfile, lib_gpu: str, used: list[str]) -> list[StaticCase]:
    """LLM-Inference-Bench vLLM static-batch latencies of the profiled models (repeats: median)."""
    df = ds.llm_inference_bench(lib_gpu, "vllm")
    df = df[(df["metric"] == "latency_s") & df["model"].isin(list(LIB_MODELS))]
    if df.empty:
        return []
    for p in sorted(df["source"].unique()):
        if p not in used:
            used.append(str(p))
    g = df.groupby(["model", "num_devices", "batch_size", "input_len", "output_len"],
                   as_index=False)["value"].median()
    cases = []
    for r in g.itertuples(index=False):
        name, wdt = LIB_MODELS[str(r.model)]
        kvdt = "fp16" if wdt == "fp16" else "bf16"
        cases.append(_make_case(gpu, "llm-inference-bench", name, int(r.num_devices), wdt, kvdt,
                                int(r.batch_size), int(r.input_len), int(r.output_len),
                                float(r.value)))
    return cases


OVERHEAD_PARAMS = ("step_overhead_us", "per_seq_overhead_us", "layer_overhead_us")
LAYER_OVERHEAD_MAX_US = 25.0
"""Physical bound on the non-GEMM per-layer kernel time (five small kernels of ~2–4 µs)."""


def _family(version: str) -> str:
    """Calibration family of an aiconfigurator version folder: ``0.24.0`` → ``0.24``."""
    return ".".join(version.split(".")[:2])


def table_version(gpu_name: str, kind: str, version: str) -> str:
    """The version folder a fit on ``version`` reads ``kind`` from (:data:`TABLE_SUBSTITUTES`)."""
    sub = TABLE_SUBSTITUTES.get((gpu_name, kind, version))
    return sub[0] if sub else version


def substitutions(gpu_name: str, version: str) -> list[str]:
    """Provenance sentences for every table a fit on ``version`` takes from another folder."""
    out = [f"The vLLM {version} {kind} table of {gpu_name} is NOT used: {why}; vLLM {v} instead "
           f"(listed in data)." for (g, kind, ver), (v, why) in TABLE_SUBSTITUTES.items()
           if g == gpu_name and ver == version]
    if FP4_MOE:
        v4 = fp4_moe_version(gpu_name, version)
        if v4 != version:
            out.append(f"The vLLM {version} MoE table of {gpu_name} has no w4a16_mxfp4 rows at "
                       f"the served shapes: moe_*_fp4 are fitted on the nearest newer table that "
                       f"has them, vLLM {v4} (listed in data).")
    return out


def fp4_moe_version(gpu_name: str, version: str) -> str:
    """The aiconfigurator version folder whose MXFP4 (``w4a16_mxfp4``) fused-MoE rows the
    ``version`` fit uses: ``version`` itself when its table has rows at the served shapes, else the
    nearest newer folder that has them (the older tables of H100, and H200's 0.14.0, have none)."""
    df = ds.aiconfigurator_kernels(gpu_name, "moe", None, collapse_repeats=True)
    have = sorted({str(v) for v, d in df.groupby("folder_version")
                   if len(_moe_rows(d, ["w4a16_mxfp4"]))}, key=ds._version_key)
    if version in have:
        return version
    newer = [v for v in have if ds._version_key(v) > ds._version_key(version)]
    if not newer:
        raise ds.DataMissing(f"{gpu_name}: no aiconfigurator MXFP4 MoE rows at or after vLLM "
                             f"{version}")
    return newer[0]


def fit_kernels(gpu_name: str, version: str | None = None
                ) -> tuple[Calibration, dict[str, float], list[str], str]:
    """All kernel-table fits for an NVIDIA GPU on the aiconfigurator ``version`` folder (default
    :data:`KERNEL_VERSION`): (calibration, residuals, data files, version)."""
    gpu = load_gpu(gpu_name)
    version = version or KERNEL_VERSION[gpu.name]
    used: list[str] = []
    cal = Calibration()
    residuals: dict[str, float] = {}

    def table(kind: str) -> pd.DataFrame:
        return _kernels(gpu.name, kind, table_version(gpu.name, kind, version), used)

    g = fit_gemm(gpu, table("gemm"), cal)
    cal = cal.model_copy(update=g.values)
    residuals.update(g.residuals)
    a = fit_attention(gpu, table("context_attention"), table("generation_attention"), cal)
    cal = cal.model_copy(update=a.values)
    residuals.update(a.residuals)
    r = fit_allreduce(gpu, table("allreduce"), cal)
    cal = cal.model_copy(update=r.values)
    residuals.update(r.residuals)
    moe = table("moe")
    mo = fit_moe(gpu, moe, cal)
    cal = cal.model_copy(update=mo.values)
    residuals.update(mo.residuals)
    if FP4_MOE:
        v4 = fp4_moe_version(gpu.name, version)
        m4 = fit_moe_fp4(gpu, moe if v4 == table_version(gpu.name, "moe", version)
                         else _kernels(gpu.name, "moe", v4, used), cal)
        cal = cal.model_copy(update=m4.values)
        residuals.update(m4.residuals)
    return cal, residuals, used, version


def fit_overheads(gpu: GpuProfile, cal: Calibration, cases: list[StaticCase],
                  tag: str = "e2e") -> FitResult:
    """CPU-side and small-kernel overheads on whole static batches, kernel coefficients fixed."""
    pred = _StaticPredictor(cases, gpu)
    meas = np.array([c.latency_s for c in cases])
    # NOTE: unconstrained, the fit puts ~49 µs per layer into layer_overhead_us — standing in for
    # the TP-dependent CPU cost of the benchmark's (pre-V1) vLLM, not for GPU kernels: the five
    # small kernels of a layer take ~2–4 µs each on H100. It is bounded at 25 µs, which the fit
    # reaches; the rest goes to the per-step and per-sequence terms.
    params = [Param("step_overhead_us", 200.0, 10000.0),
              Param("per_seq_overhead_us", 0.0, 200.0),
              Param("layer_overhead_us", 0.0, LAYER_OVERHEAD_MAX_US)]
    return fit_params(params, cal, pred, meas, tag=tag)


def fit_nvidia(gpu_name: str, overhead_from: CalibrationProfile | None = None,
               version: str | None = None) -> GpuFit:
    """H100-SXM / H200-SXM on the aiconfigurator ``version`` kernel tables (default
    :data:`KERNEL_VERSION`): kernel tables, then overheads on LLM-Inference-Bench (H100) or reused
    from ``overhead_from`` (H200)."""
    gpu = load_gpu(gpu_name)
    cal, residuals, used, version = fit_kernels(gpu.name, version)
    family = _family(version)
    notes = []
    padded_note = (" at the row counts vLLM pads to (1, 2, 4, multiples of 8; not the tables' "
                   "M = 2^k + 1 rows)") if PADDED_M_ONLY else ""
    method = (f"Kernel coefficients: bounded Nelder-Mead least squares on log(pred/measured) of the "
              f"aiconfigurator vLLM {version} kernel tables of {gpu.name} (collapse_repeats): dense "
              f"GEMMs bf16 + fp8 per-tensor at the served models' per-rank shapes (TP 1-8, snapped "
              f"to the table grid), M <= 16384{padded_note} -> gemm_*, weight_bw_efficiency "
              f"(memory-bound small-M rows); context + generation flash attention, full "
              f"attention, bf16/fp8 KV, the models' per-rank head layouts -> attn_*, "
              f"kv_bw_efficiency*; vLLM custom all-reduce (CUDA-graph), 2/4/8 GPUs, "
              f"4 KiB-512 MiB -> allreduce_*; fused MoE bf16 + fp8 block-scaled, balanced "
              f"routing, the MoE models' shapes -> moe_*.")
    if SIZED_GEMMS:
        method += (" Dense GEMMs per class (QKV, O, router, gate-up, down) with efficiency x "
                   "N*K/(N*K + gemm_nk_half[_fp8]) and, for fp8 (W8A8), vLLM's per-token "
                   "activation quantisation as its own kernel (3 bytes per M*K element at "
                   "weight_bw_efficiency + fp8_act_quant_latency_us).")
    if BALANCED_MOE_TOUCHES_ALL:
        method += (" A balanced MoE row touches min(E, T*k) experts (the table spreads tokens "
                   "evenly).")
    if FP4_MOE:
        method += (" MXFP4 weight-only experts (gpt-oss Triton kernel, w4a16_mxfp4 rows) -> "
                   "moe_*_fp4, fitted separately with their own latency and m_half.")
    for sentence in substitutions(gpu.name, version):
        method += " " + sentence
    commits = [f"aiconfigurator@{_commit('calibration/aiconfigurator')}"]
    if overhead_from is None:
        lib_used: list[str] = []
        cases = lib_cases(gpu, "H100", lib_used)
        ov = fit_overheads(gpu, cal, cases)
        cal = cal.model_copy(update=ov.values)
        residuals.update(ov.residuals)
        used += lib_used
        commits.append(f"llm-inference-bench@{_commit('calibration/llm-inference-bench')}")
        method += (" Overheads (step_overhead_us, per_seq_overhead_us, layer_overhead_us) with the "
                   "kernel coefficients fixed: same least squares on LLM-Inference-Bench H100 vLLM "
                   "static-batch latencies (Meta-Llama-3-8B TP1/2/4 and Meta-Llama-3-70B TP4 bf16 as "
                   "Llama-3.1-8B/70B, Llama-2-70B TP4 fp16; batch 1-64, in = out 128-2048; repeats: "
                   "median), each batch replayed through the simulator's scheduler "
                   f"(max_num_batched_tokens {STATIC_MAX_BATCHED_TOKENS}, max_num_seqs = batch). "
                   "The benchmark's vLLM version is not recorded (2024); its overheads may exceed "
                   "those of the vLLM the kernels come from. layer_overhead_us is bounded at "
                   f"{LAYER_OVERHEAD_MAX_US:g} us (the fit reaches the bound; unbounded it would take "
                   "~49 us, CPU cost of the old engine rather than GPU kernels).")
        notes.append(f"overheads fitted on {len(cases)} LLM-Inference-Bench H100 vLLM batches")
    else:
        vals = {k: getattr(overhead_from.coefficients, k) for k in OVERHEAD_PARAMS}
        cal = cal.model_copy(update=vals)
        method += (f" Overheads ({', '.join(OVERHEAD_PARAMS)}) copied from "
                   f"{overhead_from.gpu}__vllm-{overhead_from.vllm_family}: no {gpu.name} end-to-end "
                   f"source exists outside the validation suites (GH200 in LLM-Inference-Bench is a "
                   f"different host).")
        notes.append(f"overheads reused from {overhead_from.gpu}")
    prof = CalibrationProfile(
        gpu=gpu.name, vllm_family=family, coefficients=_rounded(cal),
        provenance=CalibrationProvenance(method=method, data=used, commit="; ".join(commits),
                                         date=_today(), residuals=residuals, validation={},
                                         regime=kernel_regime(gpu.name, version)))
    return GpuFit(prof, notes)


def kernel_regime(gpu_name: str, version: str) -> dict[str, Any]:
    """The step shapes an NVIDIA kernel fit covered (``CalibrationProvenance.regime``): the
    decode batches and KV lengths of the generation-attention table, the GEMM rows' M ≤ 16384
    (tokens per step), TP 1 and the all-reduce group sizes."""
    gen = ds.aiconfigurator_kernels(gpu_name, "generation_attention",
                                    table_version(gpu_name, "generation_attention", version),
                                    collapse_repeats=True)
    gen = gen[gen["batch_size"] <= 1024]
    return {"running_seqs": [1, int(gen["batch_size"].max())],
            "tokens_per_step": [1, 16384],
            "context": [int(gen["kv_len"].min()), int(gen["kv_len"].max())],
            "tp": [1, 2, 4, 8],
            "source": f"aiconfigurator vLLM {version} kernel tables (end-to-end CPU overheads: "
                      f"see method)"}
