"""Fit the step-time model's coefficients on real measurements and write calibration files.

What this does: turns measured kernel and end-to-end latencies into the coefficients of
:class:`simulator.profiles.Calibration` for one GPU and one vLLM version family, and writes them with
their provenance and fit residuals to ``hardware_profiles/calibration/<gpu>__vllm-<family>.yaml``.
Every prediction made while fitting goes through the simulator's own physics — the kernel formulas
and :class:`~simulator.engine.step_time.RooflineStepTime` of :mod:`simulator.engine.step_time`, and
the real vLLM-v1 scheduler for whole runs — so a fitted coefficient means the same thing in the fit
and in a simulation.

Fits, per GPU (data root: :func:`simulator.calibrate.datasets.shared_data_root`):

- **H100-SXM, H200-SXM** — kernel tables of aiconfigurator (vLLM 0.24.0, the newest version with
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
  pre-V1 vLLM (2024): with :data:`V1_OVERHEAD_PRIOR` its overheads are written as family
  :data:`V0_FAMILY` (for simulating vLLM < 0.8), and the vLLM-0.24 files take the V1 prior
  :data:`V1_OVERHEADS` for the CPU terms instead (a cited prior, not a fit: no V1-era end-to-end
  source outside the validation suites exists).
- **H100-SXM, H200-SXM, older kernel families** (:data:`OLDER_KERNEL_VERSIONS`: families ``0.14``
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
- **MI300X** — no kernel tables: every coefficient that matters for the measured runs is fitted, as
  a maximum a-posteriori estimate around documented priors, on ROCm's vLLM dev-docker fixed-batch
  latencies (Llama-3.1-70B/405B FP8, FP8 KV, TP8, batch 1–128, input 128/2048, output 2048) of
  vLLM 0.6.6–0.8.5 (:data:`MI300X_FIT_VERSIONS`); vLLM 0.9.0.1, 0.9.1 and 0.10.0 are left for the
  ``rocm-mi300x`` validation suite. Each latency is predicted by replaying the batch through the
  scheduler (prefill + 2048 decode steps) with the step model. LLM-Inference-Bench's MI300X vLLM
  rows (bf16, an early 2024 ROCm vLLM) were checked and left out: they run 2–8× slower than the
  dev-docker data implies, so they describe another software stack.
- **MI325X** — no measurements: a derived prior, MI300X's fit with the bandwidth-bound terms scaled
  by the spec-sheet HBM ratio (6.0 / 5.3 TB/s; same compute peaks and platform).

The validation data (``silicon_sample.csv``, the dstack serving runs, ROCm 0.9.x/0.10.0) is never
read here. ``fit_from_benchmark`` fits a user's own vLLM ``benchmark_serving`` JSON (family
``custom`` by default) by replaying its recorded requests, in order, at Poisson arrivals of its
request rate.

Reproducibility: the optimiser (bounded Nelder–Mead on log-ratio residuals, restarted to
convergence) is deterministic; coefficients are written with 8 significant digits. A rewrite keeps
the file's ``date`` (and part B's ``validation`` entries) when the coefficients, data and method are
unchanged, so rerunning ``servesim calibrate`` leaves the files byte-identical; pass ``date=`` to
stamp a new one. ``--check`` refits and fails when any coefficient moved by more than 1e-6 relative.
"""

from __future__ import annotations

import datetime as _dt
import functools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer
import yaml

from simulator.calibrate import datasets as ds
from simulator.engine.kv_cache import KVCacheManager
from simulator.engine.request import Request
from simulator.engine.scheduler import Scheduler, SchedulerConfig
from simulator.engine.step_time import (
    US,
    RooflineStepTime,
    StepFeatures,
    allreduce_seconds,
    decode_attention_seconds,
    gemm_seconds,
    prefill_attention_seconds,
    touched_experts,
)
from simulator.errors import ConfigError
from simulator.profiles import (
    BYTES_PER_PARAM,
    Calibration,
    CalibrationProfile,
    CalibrationProvenance,
    GpuProfile,
    ModelProfile,
    data_root,
    find_calibration,
    list_models,
    load_gpu,
    load_model,
    memory_budget,
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
#: ROCm dev-docker vLLM versions the MI300X fit uses; the rest (0.9.0.1, 0.9.1, 0.10.0) are held
#: out for validation.
MI300X_FIT_VERSIONS = ("0.6.6", "0.7.3", "0.8.3", "0.8.5")
MI300X_FAMILY = "0.8"
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
#: Give the NVIDIA vLLM-0.24 files the V1 engine's CPU overheads (``V1_OVERHEADS``, a prior) and
#: write the LLM-Inference-Bench overhead fit (a pre-V1 vLLM) as family ``V0_FAMILY`` instead;
#: False keeps the LLM-Inference-Bench overheads in the 0.24 files.
V1_OVERHEAD_PRIOR = True
V0_FAMILY = "v0"
#: vLLM V1's per-step and per-sequence CPU cost outside the GPU kernels: a PRIOR, not a fit. V1
#: runs scheduling, input preparation and output processing in a busy engine-core process that
#: overlaps them with the GPU's execution of the previous step (async scheduling), so they add
#: ~nothing to the step time; NVIDIA's aiconfigurator prices a vLLM step as the sum of its measured
#: kernel times with no CPU term (sdk/backends/vllm_backend.py ``run_agg``). No V1-era end-to-end
#: source outside the validation suites exists in the shared data to fit them on.
V1_OVERHEADS = {"step_overhead_us": 0.0, "per_seq_overhead_us": 0.0, "per_token_overhead_us": 0.0}
#: Count the experts a "balanced" MoE table row touches as min(E, T·k) (how the table routes);
#: False uses the random-routing expectation of the step model.
BALANCED_MOE_TOUCHES_ALL = True
#: Engine settings assumed for the static-batch sources (vLLM's default token budget).
STATIC_MAX_BATCHED_TOKENS = 8192
GPUS = ("H100-SXM", "H200-SXM", "MI300X", "MI325X")
TOL = 1e-6
"""Relative tolerance of ``--check``."""
SIG_DIGITS = 8
"""Significant digits coefficients are written with."""
NOISE_SIGMA = 0.1
"""Assumed typical |log error| of one measurement under the model: weighs prior terms against the
data in maximum a-posteriori fits (loss = mean squared log error + NOISE_SIGMA² / N × Σ z²)."""

# LLM-Inference-Bench models → servesim profiles (same architecture; Llama-3 and 3.1 differ only in
# RoPE scaling and context length, which the step model does not see) and their weight dtype.
LIB_MODELS = {
    "meta-llama/Meta-Llama-3-8B": ("Llama-3.1-8B", "bf16"),
    "meta-llama/Meta-Llama-3-70B": ("Llama-3.1-70B", "bf16"),
    "meta-llama/Llama-2-70b-hf": ("Llama-2-70B", "fp16"),
}
ROCM_MODELS = {
    "Llama-3.1-70B-Instruct-FP8-KV": "Llama-3.1-70B",
    "Llama-3.1-405B-Instruct-FP8-KV": "Llama-3.1-405B",
}


# --------------------------------------------------------------------------------------------
# Bounded parameters and a deterministic optimiser
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """A fitted coefficient with its physical bounds and (optionally) a log-normal prior."""

    name: str
    lo: float
    hi: float
    prior: float | None = None
    """Centre of the prior (None: no prior term)."""
    prior_sigma: float = 0.5
    """Width of the prior in natural-log units (0.5 ≈ a factor 1.65 at one sigma)."""

    def value(self, x: float) -> float:
        """Unconstrained x → value in (lo, hi) through a logistic map."""
        return self.lo + (self.hi - self.lo) / (1.0 + math.exp(-max(min(x, 50.0), -50.0)))

    def x_of(self, v: float) -> float:
        f = (min(max(v, self.lo), self.hi) - self.lo) / (self.hi - self.lo)
        f = min(max(f, 1e-6), 1 - 1e-6)
        return math.log(f / (1 - f))


def nelder_mead(f: Callable[[np.ndarray], float], x0: np.ndarray, step: float = 0.5,
                max_evals: int = 6000, tol: float = 1e-13) -> tuple[np.ndarray, float]:
    """Minimise ``f`` from ``x0`` by Nelder–Mead (standard coefficients), restarted from the best
    point until a restart no longer improves; deterministic."""
    n = len(x0)
    best = np.asarray(x0, dtype=float)
    fbest = f(best)
    evals = 1
    for _restart in range(12):
        simplex = [best.copy()]
        for i in range(n):
            p = best.copy()
            p[i] += step
            simplex.append(p)
        fs = [f(p) for p in simplex]
        evals += n
        while evals < max_evals:
            order = np.argsort(fs, kind="stable")
            simplex = [simplex[i] for i in order]
            fs = [fs[i] for i in order]
            if abs(fs[-1] - fs[0]) <= tol * (abs(fs[0]) + tol) and \
                    max(float(np.max(np.abs(p - simplex[0]))) for p in simplex) < 1e-9:
                break
            centroid = np.mean(simplex[:-1], axis=0)
            xr = centroid + (centroid - simplex[-1])
            fr = f(xr)
            evals += 1
            if fr < fs[0]:
                xe = centroid + 2.0 * (centroid - simplex[-1])
                fe = f(xe)
                evals += 1
                simplex[-1], fs[-1] = (xe, fe) if fe < fr else (xr, fr)
            elif fr < fs[-2]:
                simplex[-1], fs[-1] = xr, fr
            else:
                inside = fr >= fs[-1]
                xc = centroid + (0.5 * (simplex[-1] - centroid) if inside
                                 else 0.5 * (xr - centroid))
                fc = f(xc)
                evals += 1
                if fc < min(fr, fs[-1]):
                    simplex[-1], fs[-1] = xc, fc
                else:
                    for i in range(1, n + 1):
                        simplex[i] = simplex[0] + 0.5 * (simplex[i] - simplex[0])
                        fs[i] = f(simplex[i])
                    evals += n
        i0 = int(np.argmin(fs))
        improved = fs[i0] < fbest - tol * (abs(fbest) + tol)
        if fs[i0] <= fbest:
            best, fbest = simplex[i0].copy(), fs[i0]
        if not improved or evals >= max_evals:
            break
        step = max(step * 0.5, 1e-3)
    return best, fbest


@dataclass
class FitResult:
    """Values of the fitted parameters and the residuals of the fit set."""

    values: dict[str, Any]
    residuals: dict[str, float]
    rel_errors: np.ndarray = field(repr=False)


def fit_params(params: Sequence[Param], start: Calibration,
               predict: Callable[[Calibration], np.ndarray], measured: np.ndarray,
               weights: np.ndarray | None = None, tag: str = "fit") -> FitResult:
    """Least squares on log(pred / measured) (+ log-normal prior terms), over ``params`` of
    ``start``; returns the best values and residual statistics named ``<tag>_…``.

    Nelder–Mead finds the basin; a Levenberg–Marquardt polish on the residual vector then pins the
    optimum to ~1e-10 (a minimum of a sum of squares is only located to ~√ε by its value alone),
    so refits agree to far better than the 1e-6 ``--check`` tolerance."""
    meas = np.asarray(measured, dtype=float)
    w = np.ones_like(meas) if weights is None else np.asarray(weights, dtype=float)
    sw = np.sqrt(w / w.sum())
    base = start.model_dump()
    prior_w = NOISE_SIGMA / math.sqrt(len(meas))

    def cal_of(x: np.ndarray) -> Calibration:
        upd = {p.name: p.value(float(v)) for p, v in zip(params, x, strict=True)}
        return Calibration.model_construct(**{**base, **upd})

    def resid(x: np.ndarray) -> np.ndarray:
        pred = predict(cal_of(x))
        r = sw * np.log(np.maximum(pred, 1e-30) / meas)
        pri = [prior_w * math.log(p.value(float(v)) / p.prior) / p.prior_sigma
               for p, v in zip(params, x, strict=True) if p.prior is not None]
        return np.concatenate([r, pri]) if pri else r

    def loss(x: np.ndarray) -> float:
        r = resid(x)
        return float(np.sum(r * r))

    x0 = np.array([p.x_of(float(base[p.name])) for p in params])
    x, _ = nelder_mead(loss, x0)
    x = levenberg_marquardt(resid, x)
    values = {p.name: _round(p.value(float(v))) for p, v in zip(params, x, strict=True)}
    cal = Calibration.model_construct(**{**base, **values})
    rel = predict(cal) / meas - 1.0
    return FitResult(values, residual_stats(rel, tag), rel)


def levenberg_marquardt(resid: Callable[[np.ndarray], np.ndarray], x0: np.ndarray,
                        iters: int = 60, h: float = 1e-6) -> np.ndarray:
    """Polish a least-squares minimum: damped Gauss–Newton steps with a central-difference
    Jacobian, accepted only when they lower the sum of squares; deterministic."""
    x = np.asarray(x0, dtype=float).copy()
    r = resid(x)
    f = float(np.sum(r * r))
    lam = 1e-3
    for _ in range(iters):
        J = np.empty((len(r), len(x)))
        for i in range(len(x)):
            e = np.zeros_like(x)
            e[i] = h
            J[:, i] = (resid(x + e) - resid(x - e)) / (2 * h)
        g = J.T @ r
        A = J.T @ J
        improved = False
        for _try in range(12):
            D = A + lam * (np.diag(np.diag(A)) + 1e-12 * np.eye(len(x)))
            try:
                dx = -np.linalg.solve(D, g)
            except np.linalg.LinAlgError:
                lam *= 10
                continue
            xn = np.clip(x + dx, -50.0, 50.0)
            rn = resid(xn)
            fn = float(np.sum(rn * rn))
            if fn < f:
                step = float(np.max(np.abs(xn - x)))
                x, r, f = xn, rn, fn
                lam = max(lam / 10, 1e-12)
                improved = True
                break
            lam *= 10
        if not improved or step < 1e-12:
            break
    return x


def residual_stats(rel: np.ndarray, tag: str) -> dict[str, float]:
    """Median and p90 of |relative error| (%), and the number of points."""
    a = np.abs(np.asarray(rel, dtype=float))
    return {f"{tag}_median_abs_rel_err_pct": _round(float(np.median(a)) * 100, 4),
            f"{tag}_p90_abs_rel_err_pct": _round(float(np.percentile(a, 90)) * 100, 4),
            f"{tag}_points": float(len(a))}


def _round(v: float, digits: int = SIG_DIGITS) -> float:
    if v == 0 or not math.isfinite(v):
        return float(v)
    return float(f"{v:.{digits}g}")


# --------------------------------------------------------------------------------------------
# Layer shapes of the served models
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Kernel fits (aiconfigurator tables)
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Whole runs through the real scheduler
# --------------------------------------------------------------------------------------------


def _kv_blocks(model: ModelProfile, gpu: GpuProfile, tp: int, weight_dtype: str, kv_dtype: str,
               max_num_seqs: int, max_num_batched_tokens: int, block_size: int = 16) -> int:
    mem = memory_budget(model, gpu, tp=tp, weight_dtype=weight_dtype, kv_dtype=kv_dtype,
                        gpu_memory_utilization=0.9, block_size=block_size,
                        max_num_batched_tokens=max_num_batched_tokens,
                        max_num_seqs=max_num_seqs, reserve_gib=1.0)
    return max(mem.num_blocks, 1)


def _stack(rows: list[StepFeatures]) -> StepFeatures:
    cols = {k: np.array([getattr(r, k) for r in rows], dtype=float)
            for k in StepFeatures.__dataclass_fields__}
    return StepFeatures(**cols)


def _concat(parts: list[StepFeatures]) -> StepFeatures:
    lens = [len(np.atleast_1d(p.num_tokens)) for p in parts]
    return StepFeatures(**{k: np.concatenate([
        np.broadcast_to(np.asarray(getattr(p, k), dtype=float), (n,)) for p, n in
        zip(parts, lens, strict=True)]) for k in StepFeatures.__dataclass_fields__})


def static_batch_steps(batch: int, input_len: int, output_len: int, *, num_blocks: int,
                       max_num_batched_tokens: int = STATIC_MAX_BATCHED_TOKENS,
                       block_size: int = 16) -> StepFeatures:
    """Features of every step of an offline batch (``batch`` prompts of ``input_len`` tokens
    generating ``output_len`` tokens each, all submitted at t = 0, ``max_num_seqs`` = batch), as the
    simulator's scheduler runs it: vLLM's ``benchmark_latency`` / a static-batch benchmark.

    NOTE: the prefill phase runs through the real scheduler step by step; once only decodes are left
    and the KV cache can hold every request to its end (no preemption possible), the remaining
    decode steps are written in closed form — exactly what the scheduler would do, without its
    per-step Python cost.
    """
    need = batch * -(-(input_len + output_len) // block_size)
    return _static_batch_steps(batch, input_len, output_len, min(num_blocks, need),
                               max_num_batched_tokens, block_size)


@functools.lru_cache(maxsize=512)
def _static_batch_steps(batch: int, input_len: int, output_len: int, num_blocks: int,
                        max_num_batched_tokens: int, block_size: int) -> StepFeatures:
    # NOTE: when the whole batch fits (num_blocks = what it needs), a smaller pool behaves exactly
    # like the real one — allocation never fails — so runs differing only in pool size share this.
    max_len = input_len + output_len + block_size
    sched = Scheduler(SchedulerConfig(max_num_seqs=batch,
                                      max_num_batched_tokens=max_num_batched_tokens,
                                      max_model_len=max_len),
                      KVCacheManager(num_blocks, block_size, True, max_len))
    for i in range(batch):
        sched.add_request(Request(i, input_len, output_len))
    rows: list[StepFeatures] = []
    while sched.has_work():
        if not len(sched.waiting) and rows and all(
                r.num_tokens - r.num_computed_tokens == 1 for r in sched.running):
            need = sum(-(-(r.prompt_len + r.max_tokens) // block_size) for r in sched.running)
            if need <= num_blocks:
                tail = _decode_tail(sched.running)
                head = compress(_stack(rows))
                return _concat([head, tail]) if len(np.atleast_1d(tail.num_tokens)) else head
        plan = sched.schedule()
        if plan.is_empty:
            raise ConfigError(f"a batch of {batch} × {input_len} tokens does not fit the KV cache "
                              f"({num_blocks} blocks)")
        rows.append(StepFeatures.from_plan(plan))
        sched.update(plan)
    return compress(_stack(rows))


def _decode_tail(running: list[Request]) -> StepFeatures:
    """Closed-form decode steps of requests that only decode from here on."""
    ctx = np.array([r.num_computed_tokens for r in running], dtype=float)
    left = np.array([r.max_tokens - r.num_output_tokens for r in running], dtype=np.int64)
    steps = int(left.max()) if len(left) else 0
    j = np.arange(steps)
    order = np.argsort(left, kind="stable")
    left_s, ctx_s = left[order], ctx[order]
    # Requests still active at tail step j: left > j.
    first = np.searchsorted(left_s, j, side="right")
    active = len(left_s) - first
    ctx_suffix = np.concatenate([np.cumsum(ctx_s[::-1])[::-1], [0.0]])
    pairs = ctx_suffix[first] + active * (j + 1.0)
    a = active.astype(float)
    zero = np.zeros(steps)
    return compress(StepFeatures(a, a, a, pairs, zero, zero, zero))


def compress(f: StepFeatures) -> StepFeatures:
    """Merge runs of consecutive decode-only rows of equal shape into one row (``steps`` = run
    length, ``decode_pairs`` summed): the same total time, far fewer rows to evaluate."""
    n = len(np.atleast_1d(f.num_tokens))
    cols = {k: np.broadcast_to(np.asarray(getattr(f, k), dtype=float), (n,)).copy()
            for k in StepFeatures.__dataclass_fields__}
    if n == 0:
        return f
    dec_only = cols["prefill_tokens"] == 0
    same = np.ones(n, bool)
    same[1:] = (dec_only[1:] & dec_only[:-1] & (cols["num_tokens"][1:] == cols["num_tokens"][:-1])
                & (cols["num_seqs"][1:] == cols["num_seqs"][:-1]))
    same[0] = False
    starts = np.flatnonzero(~same)
    out = {}
    for k, v in cols.items():
        if k in ("decode_pairs", "steps"):
            out[k] = np.add.reduceat(v, starts)
        else:
            out[k] = v[starts]
    return StepFeatures(**out)


@dataclass
class StaticCase:
    """One measured static-batch latency and the step features of its replay."""

    source: str
    model: str
    tp: int
    weight_dtype: str
    kv_dtype: str
    batch: int
    input_len: int
    output_len: int
    latency_s: float
    features: StepFeatures
    version: str = ""


def static_latency(case: StaticCase, gpu: GpuProfile, cal: Calibration) -> float:
    """Predicted wall time of the batch: the sum of its step times."""
    st = RooflineStepTime(load_model(case.model), gpu, tp=case.tp,
                          weight_dtype=case.weight_dtype, kv_dtype=case.kv_dtype, calibration=cal)
    return float(np.sum(st.total(case.features)))


def _make_case(gpu: GpuProfile, source: str, model: str, tp: int, wdt: str, kvdt: str, batch: int,
               inp: int, out: int, lat: float, version: str = "",
               max_num_batched_tokens: int = STATIC_MAX_BATCHED_TOKENS) -> StaticCase:
    m = load_model(model)
    blocks = _kv_blocks(m, gpu, tp, wdt, kvdt, batch, max_num_batched_tokens)
    feats = static_batch_steps(batch, inp, out, num_blocks=blocks,
                               max_num_batched_tokens=max_num_batched_tokens)
    return StaticCase(source, model, tp, wdt, kvdt, batch, inp, out, lat, feats, version)


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


def rocm_cases(gpu: GpuProfile, versions: Sequence[str], used: list[str]) -> list[StaticCase]:
    """ROCm dev-docker MI300X fixed-batch latencies measured under ``versions`` (rows first shown
    under that version; the newest value when the README revised one)."""
    df = ds.rocm_mi300x_latency()
    df = df[df["vllm_version"].isin(list(versions)) & df["latest_in_version"]
            & ~df["carried_over"]].sort_values(
        ["vllm_version", "model", "batch_size", "input_len", "output_len"], kind="stable")
    rel = "calibration/rocm-vllm-devdocker/mi300x_devdocker_latency_dedup.csv"
    if rel not in used:
        used.append(rel)
    return [_make_case(gpu, "rocm-vllm-devdocker", ROCM_MODELS[str(r["model"])], int(r["tp"]),
                       "fp8", "fp8", int(r["batch_size"]), int(r["input_len"]),
                       int(r["output_len"]), float(r["latency_s"]), str(r["vllm_version"]))
            for r in df.to_dict("records")]


#: Read the ROCm README's throughput "tokens/s" as total (prompt + output) tokens/s; False: as
#: output tokens/s. The README does not say which; the fit set decides: read as output tokens/s
#: its throughput rows fit to 4.4 % median |error| (p90 8.9 %) beside the latencies, read as
#: total tokens/s to 23 % (p90 38 %: the 2,048-token-prompt rows then imply steps twice as slow
#: as the 128-token-prompt rows with more sequences and a similar KV cache).
ROCM_THROUGHPUT_TOTAL = False
#: ``--max-num-batched-tokens`` of the ROCm README's benchmark_throughput command.
ROCM_THROUGHPUT_BATCHED_TOKENS = 131072


def rocm_throughput_cases(gpu: GpuProfile, versions: Sequence[str],
                          used: list[str]) -> list[StaticCase]:
    """ROCm dev-docker MI300X offline throughput rows measured under ``versions``, as static
    batches: ``num_prompts`` prompts at t = 0 with ``max_num_seqs`` = prompts (every row), whose
    elapsed time is the prompts' tokens over the README's tokens/s (output tokens, or total with
    :data:`ROCM_THROUGHPUT_TOTAL`). These are the fit's
    hundreds-to-thousands of running sequences, where compute efficiency and per-sequence costs
    separate from the bandwidth terms the fixed-batch latencies pin."""
    df = ds.rocm_mi300x_throughput()
    df = df[df["vllm_version"].isin(list(versions)) & df["latest_in_version"]
            & ~df["carried_over"] & (df["num_prompts"] == df["max_num_seqs"])].sort_values(
        ["vllm_version", "model", "input_len", "output_len", "num_prompts"], kind="stable")
    rel = "calibration/rocm-vllm-devdocker/mi300x_devdocker_throughput_dedup.csv"
    if rel not in used:
        used.append(rel)
    out = []
    for r in df.to_dict("records"):
        n, i, o = int(r["num_prompts"]), int(r["input_len"]), int(r["output_len"])
        elapsed = n * (i + o if ROCM_THROUGHPUT_TOTAL else o) / float(r["throughput_tok_s"])
        out.append(_make_case(gpu, "rocm-vllm-devdocker-throughput", ROCM_MODELS[str(r["model"])],
                              int(r["tp"]), "fp8", "fp8", n, i, o, elapsed,
                              str(r["vllm_version"]),
                              max_num_batched_tokens=ROCM_THROUGHPUT_BATCHED_TOKENS))
    return out


class _StaticPredictor:
    """Vectorised prediction of many static batches under one calibration."""

    def __init__(self, cases: list[StaticCase], gpu: GpuProfile) -> None:
        self.gpu = gpu
        self.groups: dict[tuple[str, int, str, str], list[int]] = {}
        for i, c in enumerate(cases):
            self.groups.setdefault((c.model, c.tp, c.weight_dtype, c.kv_dtype), []).append(i)
        self.feats = {k: _concat([cases[i].features for i in idx]) for k, idx in self.groups.items()}
        self.bounds = {k: np.cumsum([0] + [len(np.atleast_1d(cases[i].features.num_tokens))
                                           for i in idx]) for k, idx in self.groups.items()}
        self.n = len(cases)

    def __call__(self, cal: Calibration) -> np.ndarray:
        out = np.empty(self.n)
        for key, idx in self.groups.items():
            model, tp, wdt, kvdt = key
            st = RooflineStepTime(load_model(model), self.gpu, tp=tp, weight_dtype=wdt,
                                  kv_dtype=kvdt, calibration=cal)
            t = np.asarray(st.total(self.feats[key]), dtype=float)
            cs = np.concatenate([[0.0], np.cumsum(t)])
            b = self.bounds[key]
            out[idx] = cs[b[1:]] - cs[b[:-1]]
        return out


# --------------------------------------------------------------------------------------------
# Per-GPU fits
# --------------------------------------------------------------------------------------------


@dataclass
class GpuFit:
    """A calibration profile plus what the CLI prints."""

    profile: CalibrationProfile
    notes: list[str] = field(default_factory=list)


def _commit(folder: str) -> str:
    """The data source's commit (first 40-hex token of SOURCE_COMMIT.txt, else SOURCE.txt)."""
    root = ds.shared_data_root()
    for name in ("SOURCE_COMMIT.txt", "SOURCE.txt"):
        p = root / folder / name
        if p.exists():
            m = re.search(r"\b[0-9a-f]{40}\b", p.read_text())
            if m:
                return m.group(0)
    return "unknown"


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


#: MI300X priors (centres of the log-normal prior terms) and bounds: published achievable
#: fractions (FACTS.md: hipBLASLt FP8 49%, BF16 54% of peak) and H100-like kernel figures.
MI300X_PARAMS = (
    # NOTE: bounded at 0.9: the data alone would take 0.98 (batch-1 decode is latency-, not
    # bandwidth-bound on MI300X, so the term is weakly determined), above what any GPU streams in
    # our data (H100 kernel fit: 0.92).
    Param("weight_bw_efficiency", 0.2, 0.9, prior=0.75),
    Param("kv_bw_efficiency_fp8", 0.1, 0.95, prior=0.5),
    Param("gemm_efficiency_fp8", 0.1, 1.0, prior=0.49),
    Param("attn_efficiency", 0.05, 1.0, prior=0.4),
    Param("allreduce_latency_us", 1.0, 100.0, prior=10.0),
    Param("layer_overhead_us", 0.0, 100.0, prior=15.0),
    Param("step_overhead_us", 200.0, 10000.0, prior=1500.0),
    Param("per_seq_overhead_us", 0.0, 200.0, prior=20.0),
    # NOTE: identified by the throughput rows' 131072-token prefill steps (GB-sized all-reduces).
    Param("allreduce_bw_efficiency", 0.1, 0.95, prior=0.5),
)
#: MI300X coefficients fixed at these values (not identifiable from fixed-batch latency).
MI300X_FIXED = {"gemm_efficiency": 0.54, "gemm_latency_us": 6.0, "attn_latency_us": 12.0,
                "kv_bw_efficiency": 0.5, "attn_efficiency": 0.4}
#: MI300X compute units / H100 SXM streaming multiprocessors (AMD CDNA3 and NVIDIA H100 docs).
MI300X_CU_PER_SM = 304 / 132
#: The GEMM shape law of the H100 kernel fit, carried to MI300X as a DERIVED PRIOR (its data has
#: no kernel tables): the weight-matrix size at half efficiency scales with the compute units a
#: GEMM must fill with output tiles (304 CUs against 132 SMs); the small-M half point and vLLM's
#: FP8 activation-quantisation kernel (ops.scaled_fp8_quant, the same on ROCm) are carried as
#: they are. Without it one efficiency serves TP8's skinny per-GPU shapes (N·K ≈ 8–60 M) and TP1's
#: large ones alike, and the TP8-only fit data set it for the skinny ones.
MI300X_SHAPE_FROM = ("H100-SXM", "0.24")
#: Share of the MI300X fit's weight on the offline-throughput rows (the rest on the fixed-batch
#: latencies); 0 keeps them out of the fit (their residuals are still reported).
MI300X_THROUGHPUT_WEIGHT = 0.5


def mi300x_shape_prior(ref: CalibrationProfile | None = None) -> dict[str, Any]:
    """The GEMM shape coefficients of ``ref`` (default: the committed
    :data:`MI300X_SHAPE_FROM` file), sizes scaled by :data:`MI300X_CU_PER_SM` (empty when there
    is none)."""
    ref = ref or find_calibration(*MI300X_SHAPE_FROM)
    if ref is None:
        return {}
    c = ref.coefficients
    return {"gemm_nk_half": _round(c.gemm_nk_half * MI300X_CU_PER_SM),
            "gemm_nk_half_fp8": _round(c.gemm_nk_half_fp8 * MI300X_CU_PER_SM),
            "gemm_m_half": c.gemm_m_half, "fp8_act_quant": c.fp8_act_quant,
            "fp8_act_quant_latency_us": c.fp8_act_quant_latency_us}


def fit_mi300x(shape_from: CalibrationProfile | None = None) -> GpuFit:
    """MI300X on the ROCm dev-docker tables (see the method text below); ``shape_from``: the
    H100 kernel fit whose GEMM shape law is carried over (default: the committed file)."""
    gpu = load_gpu("MI300X")
    used: list[str] = []
    lat_cases = rocm_cases(gpu, MI300X_FIT_VERSIONS, used)
    tput_cases = rocm_throughput_cases(gpu, MI300X_FIT_VERSIONS, used)
    cases = lat_cases + tput_cases
    start = Calibration().model_copy(update={**MI300X_FIXED, "allreduce_bw_efficiency": 0.5,
                                             **mi300x_shape_prior(shape_from)})
    pred = _StaticPredictor(cases, gpu)
    meas = np.array([c.latency_s for c in cases])
    # Each table counts as much as the other, whatever its row count.
    n_lat = len(lat_cases)
    w_tput = MI300X_THROUGHPUT_WEIGHT
    w = np.concatenate([np.full(n_lat, (1 - w_tput) / max(n_lat, 1)),
                        np.full(len(tput_cases), w_tput / max(len(tput_cases), 1))])
    params = tuple(p for p in MI300X_PARAMS if p.name not in MI300X_FIXED and (
        w_tput > 0 or p.name != "allreduce_bw_efficiency"))
    res = fit_params(params, start, pred, meas, weights=w, tag="e2e")
    cal = start.model_copy(update=res.values)
    residuals = dict(res.residuals)
    residuals.update(residual_stats(res.rel_errors[:n_lat], "latency"))
    residuals.update(residual_stats(res.rel_errors[n_lat:], "throughput"))
    for v in MI300X_FIT_VERSIONS:
        i = np.array([c.version == v for c in cases])
        residuals.update(residual_stats(res.rel_errors[i], f"e2e_{v}"))
    priors = ", ".join(f"{p.name}~{p.prior:g}" for p in MI300X_PARAMS)
    fixed = ", ".join(f"{k}={v:g}" for k, v in MI300X_FIXED.items())
    method = (f"Maximum a-posteriori fit (bounded Nelder-Mead on log(pred/measured) plus log-normal "
              f"priors, sigma 0.5) on ROCm vLLM dev-docker MI300X data (Llama-3.1-70B/405B-Instruct-"
              f"FP8-KV, fp8 weights and KV, TP8; rows first shown under their version, newest value "
              f"per version), two tables weighted {1 - w_tput:g} / {w_tput:g}: fixed-batch latencies "
              f"(benchmark_latency, batch 1-128, input 128/2048, output 2048) and offline throughput "
              f"(benchmark_throughput, 500-3200 prompts at once with max_num_seqs = prompts, "
              f"max_num_batched_tokens {ROCM_THROUGHPUT_BATCHED_TOKENS}; the README's tokens/s read "
              f"as {'total' if ROCM_THROUGHPUT_TOTAL else 'output'} tokens/s, the reading under "
              f"which these rows agree with each other: elapsed = prompts x "
              f"{'(input + output)' if ROCM_THROUGHPUT_TOTAL else 'output'} / tokens/s). The "
              f"throughput "
              f"rows are the hundreds-to-thousands of running sequences where compute efficiency and "
              f"per-sequence cost separate from the bandwidth terms. FIT SET: vLLM "
              f"{', '.join(MI300X_FIT_VERSIONS)}; HELD OUT for validation: vLLM 0.9.0.1, 0.9.1, "
              f"0.10.0 (suites rocm-mi300x and rocm-throughput). Each case is the sum of the step "
              f"times of the batch replayed through the simulator's scheduler. Priors: {priors}; "
              f"weight_bw_efficiency is bounded at 0.9. GEMM shape law: DERIVED PRIOR from "
              f"{MI300X_SHAPE_FROM[0]}__vllm-{MI300X_SHAPE_FROM[1]} (gemm_nk_half*, scaled by "
              f"304 CUs / 132 SMs; gemm_m_half and the FP8 activation-quantisation kernel as they "
              f"are), so TP8's skinny per-GPU GEMMs and TP1's large ones get their own efficiency. "
              f"Fixed (not identifiable from these runs): {fixed}; the MoE coefficients keep the "
              f"GPU-independent priors. LLM-Inference-Bench MI300X vLLM rows (bf16, 2024 ROCm vLLM) "
              f"were checked and not used: they run 2-8x slower than the ROCm data imply, "
              f"inconsistent with it.")
    regime = {"running_seqs": [1, max(c.batch for c in cases)],
              "tokens_per_step": [1, ROCM_THROUGHPUT_BATCHED_TOKENS],
              "context": [min(c.input_len for c in cases),
                          max(c.input_len + c.output_len for c in cases)],
              "tp": sorted({c.tp for c in cases}),
              "source": "ROCm dev-docker fixed-batch latencies (batch 1-128) and offline "
                        "throughput (500-3200 prompts), vLLM " + ", ".join(MI300X_FIT_VERSIONS)}
    prof = CalibrationProfile(
        gpu=gpu.name, vllm_family=MI300X_FAMILY, coefficients=_rounded(cal),
        provenance=CalibrationProvenance(
            method=method, data=used,
            commit=f"rocm-vllm-devdocker@{_commit('calibration/rocm-vllm-devdocker')}",
            date=_today(), residuals=residuals, validation={}, regime=regime))
    return GpuFit(prof, [f"{n_lat} ROCm latencies and {len(tput_cases)} offline throughputs of "
                         f"vLLM {', '.join(MI300X_FIT_VERSIONS)}"])


#: Published max-achievable GEMM fractions (ROCm blogs, "measuring max achievable FLOPs" part 2;
#: FACTS.md): MI325X / MI300X, bf16 and fp8.
MI325X_GEMM_RATIO = {"gemm_efficiency": 64.0 / 54.0, "gemm_efficiency_fp8": 58.0 / 49.0}


def derive_mi325x(mi300x: CalibrationProfile) -> GpuFit:
    """MI325X: same CDNA3 compute die and platform as MI300X with faster HBM3E (6.0 vs 5.3 TB/s)."""
    c = mi300x.coefficients
    upd = {k: _round(min(1.0, getattr(c, k) * r)) for k, r in MI325X_GEMM_RATIO.items()}
    cal = c.model_copy(update=upd)
    ratios = ", ".join(f"{k} x {r:.4g}" for k, r in MI325X_GEMM_RATIO.items())
    method = (f"DERIVED PRIOR, not a fit: the coefficients of {mi300x.gpu}__vllm-"
              f"{mi300x.vllm_family} with {ratios} (published max-achievable GEMM throughput, "
              f"MI325X vs MI300X: BF16 64% vs 54%, FP8 58% vs 49% of the same peak; ROCm blogs, "
              f"FACTS.md). Every efficiency is a fraction of the GPU's own spec-sheet peak, so the "
              f"MI325X profile's 6.0 TB/s HBM (vs 5.3) scales the bandwidth-bound times by spec; "
              f"latencies and CPU overheads are assumed equal (same platform and software). No "
              f"MI325X measurement exists in the data; its error is unknown.")
    prof = CalibrationProfile(
        gpu="MI325X", vllm_family=mi300x.vllm_family, coefficients=cal,
        provenance=CalibrationProvenance(method=method, data=list(mi300x.provenance.data),
                                         commit=mi300x.provenance.commit, date=_today(),
                                         residuals={}, validation={},
                                         regime=dict(mi300x.provenance.regime)))
    return GpuFit(prof, [f"derived from {mi300x.gpu}"])


# --------------------------------------------------------------------------------------------
# Fitting a user's benchmark_serving run
# --------------------------------------------------------------------------------------------


@dataclass
class ReplayResult:
    mean_ttft_s: float
    mean_tpot_s: float


def replay_serving(step_model: RooflineStepTime, arrivals: np.ndarray, input_lens: np.ndarray,
                   output_lens: np.ndarray, *, num_blocks: int, max_num_seqs: int,
                   max_num_batched_tokens: int, max_model_len: int,
                   enable_chunked_prefill: bool = True, block_size: int = 16,
                   enable_prefix_caching: bool = False,
                   scored: np.ndarray | None = None) -> ReplayResult:
    """Play requests at given arrival times through one replica — the scheduler stepping with the
    step model's times, requests joining WAITING between steps as the engine core does — and return
    the mean TTFT and TPOT of the ``scored`` requests (default: all)."""
    sched = Scheduler(SchedulerConfig(max_num_seqs=max_num_seqs,
                                      max_num_batched_tokens=max_num_batched_tokens,
                                      max_model_len=max_model_len,
                                      enable_chunked_prefill=enable_chunked_prefill),
                      KVCacheManager(num_blocks, block_size, enable_prefix_caching, max_model_len))
    n = len(arrivals)
    reqs = [Request(i, int(input_lens[i]), int(output_lens[i]), float(arrivals[i]))
            for i in range(n)]
    first = np.full(n, np.nan)
    last = np.full(n, np.nan)
    t = 0.0
    nxt = 0
    done = 0
    while done < n:
        while nxt < n and arrivals[nxt] <= t:
            sched.add_request(reqs[nxt])
            nxt += 1
        if not sched.has_work():
            t = float(arrivals[nxt])
            continue
        plan = sched.schedule()
        if plan.is_empty:
            raise ConfigError("replay: a request does not fit the KV cache; raise the memory or "
                              "lower the lengths")
        t += step_model.predict(plan)
        produced, finished = sched.update(plan)
        for r in produced:
            if r.num_output_tokens == 1:
                first[r.request_id] = t
            last[r.request_id] = t
        done += len(finished)
    sel = np.ones(n, bool) if scored is None else scored
    ttft = first[sel] - arrivals[sel]
    outs = output_lens[sel]
    multi = outs > 1
    tpot = (last[sel][multi] - first[sel][multi]) / (outs[multi] - 1)
    return ReplayResult(float(np.mean(ttft)), float(np.mean(tpot)) if len(tpot) else float("nan"))


def fit_from_benchmark(path: str | Path, gpu: str, model: str, tp: int = 8,
                       weight_dtype: str | None = None, *, kv_dtype: str = "auto",
                       max_num_seqs: int = 256, max_num_batched_tokens: int = 8192,
                       enable_chunked_prefill: bool = True, family: str = "custom",
                       start: Calibration | None = None, seed: int = 0,
                       max_iters: int = 8) -> tuple[CalibrationProfile, dict[str, float]]:
    """Fit the CPU overheads and the HBM bandwidth efficiencies so that replaying a vLLM
    ``benchmark_serving`` result reproduces its mean TTFT and mean TPOT.

    The replay sends the file's requests in their recorded order with their recorded input and
    output lengths (requests that returned no token are sent with one output token: the server
    still prefilled them) at Poisson arrivals of the file's ``request_rate`` (seeded by ``seed``;
    ``inf`` = all at t = 0) through the simulator's scheduler and step model; only the ``ok``
    requests are scored. Two targets, two unknowns: one factor scales ``step_overhead_us`` and
    ``per_seq_overhead_us`` together, another scales ``weight_bw_efficiency`` and the KV efficiency
    of ``kv_dtype`` together (each capped at 1), keeping the ratios of ``start`` (default: the
    GPU's calibration file, else the prior). Solved by Levenberg–Marquardt on the two log-ratios
    (forward differences, ``max_iters`` iterations at most). Returns the profile and a dict of the
    measured, starting and fitted means (ms).
    """
    from simulator.profiles import find_calibration

    g = load_gpu(gpu)
    m = load_model(model)
    wdt = weight_dtype or m.native_dtype
    if wdt not in m.weight_dtypes:
        raise ConfigError(f"--weight-dtype: {m.name} has no {wdt} weights; supported: "
                          f"{', '.join(m.weight_dtypes)}")
    kvdt = ("fp16" if m.native_dtype == "fp16" else "bf16") if kv_dtype == "auto" else kv_dtype
    if kvdt not in ("bf16", "fp16", "fp8"):
        raise ConfigError(f"--kv-dtype: '{kv_dtype}' is not one of auto, bf16, fp16, fp8")
    if tp < 1 or m.num_attention_heads % tp:
        raise ConfigError(f"--tp: {m.name} has {m.num_attention_heads} heads, not divisible by {tp}")
    try:
        req, meta = ds.benchmark_serving(path)
    except (FileNotFoundError, ds.BadBenchmarkFile) as e:
        raise ConfigError(str(e)) from None
    ok = req["ok"].to_numpy(bool)
    multi = ok & (req["output_len"].to_numpy() > 1)
    if ok.sum() < 2 or multi.sum() < 1:
        raise ConfigError(f"{path}: fewer than two successful requests to fit on")
    rate = float(meta.get("request_rate", float("inf")) or float("inf"))
    n = len(req)
    rng = np.random.default_rng(seed)
    arrivals = (np.zeros(n) if not math.isfinite(rate)
                else np.cumsum(rng.exponential(1.0 / rate, n)))
    inp = np.maximum(req["input_len"].to_numpy(np.int64), 1)
    out = np.maximum(req["output_len"].to_numpy(np.int64), 1)
    max_len = int(inp.max() + out.max() + 16)
    blocks = _kv_blocks(m, g, tp, wdt, kvdt, max_num_seqs, max_num_batched_tokens)
    meas = np.array([float(req.loc[ok, "ttft_s"].mean()), float(req.loc[multi, "tpot_s"].mean())])
    if start is None:
        found = find_calibration(g.name)
        start = found.coefficients if found is not None else Calibration()
    kv_name = "kv_bw_efficiency_fp8" if kvdt == "fp8" else "kv_bw_efficiency"
    base = start.model_dump()
    if base["step_overhead_us"] < 200.0:
        # NOTE: a start without CPU overheads (the vLLM V1 prior) leaves nothing to scale; the
        # overhead factor then scales the GPU-independent prior's step and per-sequence terms.
        prior = Calibration()
        base["step_overhead_us"] = prior.step_overhead_us
        base["per_seq_overhead_us"] = prior.per_seq_overhead_us

    def cal_of(x: np.ndarray) -> Calibration:
        so, sb = math.exp(float(x[0])), math.exp(float(x[1]))
        # NOTE: the per-step overhead is kept in its plausible range (0.2–10 ms), the
        # efficiencies at most 1.
        b0 = max(base["step_overhead_us"], 1.0)
        so = min(max(so, 200.0 / b0), 10000.0 / b0)
        return Calibration.model_construct(**{
            **base, "step_overhead_us": base["step_overhead_us"] * so,
            "per_seq_overhead_us": base["per_seq_overhead_us"] * so,
            "weight_bw_efficiency": min(1.0, base["weight_bw_efficiency"] * sb),
            kv_name: min(1.0, base[kv_name] * sb)})

    def run(cal: Calibration) -> np.ndarray:
        st = RooflineStepTime(m, g, tp=tp, weight_dtype=wdt, kv_dtype=kvdt, calibration=cal)
        r = replay_serving(st, arrivals, inp, out, num_blocks=blocks, max_num_seqs=max_num_seqs,
                           max_num_batched_tokens=max_num_batched_tokens, max_model_len=max_len,
                           enable_chunked_prefill=enable_chunked_prefill, scored=ok)
        return np.array([r.mean_ttft_s, r.mean_tpot_s])

    def resid(x: np.ndarray) -> np.ndarray:
        return np.log(np.maximum(run(cal_of(np.clip(x, -4.0, 4.0))), 1e-12) / meas)

    before = run(start)
    x = _lm_forward(resid, np.zeros(2), iters=max_iters)
    cal = _rounded(Calibration.model_validate(cal_of(np.clip(x, -4.0, 4.0)).model_dump()))
    after = run(cal)
    info = {"measured_mean_ttft_ms": float(meas[0]) * 1e3,
            "measured_mean_tpot_ms": float(meas[1]) * 1e3,
            "start_mean_ttft_ms": float(before[0]) * 1e3,
            "start_mean_tpot_ms": float(before[1]) * 1e3,
            "fitted_mean_ttft_ms": float(after[0]) * 1e3,
            "fitted_mean_tpot_ms": float(after[1]) * 1e3}
    err = np.abs(after / meas - 1.0)
    residuals = {"ttft_mean_abs_rel_err_pct": _round(float(err[0]) * 100, 4),
                 "tpot_mean_abs_rel_err_pct": _round(float(err[1]) * 100, 4)}
    rate_txt = "all at t=0" if not math.isfinite(rate) else f"Poisson {rate:g}/s (seed {seed})"
    method = (f"fit_from_benchmark: one factor on (step_overhead_us, per_seq_overhead_us) and one "
              f"on (weight_bw_efficiency, {kv_name}), starting from the GPU's calibration, solved "
              f"by Levenberg-Marquardt so that replaying the file's {n} requests (recorded lengths, "
              f"in order; {rate_txt}) through the simulator's scheduler ({m.name} {wdt}, KV {kvdt}, "
              f"TP{tp}, max_num_seqs {max_num_seqs}, max_num_batched_tokens "
              f"{max_num_batched_tokens}) reproduces its mean TTFT and TPOT ({int(ok.sum())} "
              f"successful requests scored).")
    p = Path(path)
    try:
        rel = str(p.resolve().relative_to(ds.shared_data_root().resolve()))
    except ValueError:
        rel = str(p)
    prof = CalibrationProfile(
        gpu=g.name, vllm_family=family, coefficients=cal,
        provenance=CalibrationProvenance(method=method, data=[rel], commit=None, date=_today(),
                                         residuals=residuals, validation={}))
    return prof, info


def _lm_forward(resid: Callable[[np.ndarray], np.ndarray], x0: np.ndarray, iters: int,
                h: float = 0.05) -> np.ndarray:
    """Levenberg–Marquardt with forward differences of step ``h`` (a replay's output moves in
    small jumps as events reorder, so derivatives are taken over a finite step)."""
    x = np.asarray(x0, dtype=float).copy()
    r = resid(x)
    f = float(np.sum(r * r))
    lam = 1e-2
    for _ in range(iters):
        J = np.empty((len(r), len(x)))
        for i in range(len(x)):
            e = np.zeros_like(x)
            e[i] = h
            J[:, i] = (resid(x + e) - r) / h
        A, g = J.T @ J, J.T @ r
        accepted = False
        for _try in range(4):
            dx = -np.linalg.solve(A + lam * (np.diag(np.diag(A)) + 1e-9 * np.eye(len(x))), g)
            xn = np.clip(x + dx, -4.0, 4.0)
            rn = resid(xn)
            fn = float(np.sum(rn * rn))
            if fn < f:
                x, r, f = xn, rn, fn
                lam = max(lam / 10, 1e-6)
                accepted = True
                break
            lam *= 10
        if not accepted or f < 1e-6:
            break
    return x


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------

_HEADER = ("# Step-time calibration written by `servesim calibrate` (simulator/calibrate/fit.py).\n"
           "# Do not edit by hand: rerun the fit. provenance.validation is filled by\n"
           "# `servesim validate` (held-out error).\n")


def _today() -> str:
    return _dt.date.today().isoformat()


def _rounded(cal: Calibration) -> Calibration:
    def rnd(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: rnd(x) for k, x in v.items()}
        return v if v is None or isinstance(v, bool) else _round(float(v))

    return Calibration(**{k: rnd(v) for k, v in cal.model_dump().items()})


def calibration_dir() -> Path:
    return data_root("hardware_profiles") / "calibration"


def calibration_path(gpu: str, family: str, out_dir: Path | None = None) -> Path:
    return (out_dir or calibration_dir()) / f"{gpu}__vllm-{family}.yaml"


def changed_coefficients(a: Calibration, b: Calibration, tol: float = TOL) -> list[str]:
    """Names of coefficients differing by more than ``tol`` relative (absolute near zero)."""
    da, db = a.model_dump(), b.model_dump()

    def differ(x: Any, y: Any) -> bool:
        if isinstance(x, dict) or isinstance(y, dict):
            return not (isinstance(x, dict) and isinstance(y, dict) and x.keys() == y.keys()
                        and not any(differ(x[k], y[k]) for k in x))
        if x is None or y is None or isinstance(x, bool) or isinstance(y, bool):
            return bool(x != y)
        return abs(x - y) > tol * max(abs(x), abs(y), 1e-9)

    return [k for k in da if differ(da[k], db[k])]


def _read(path: Path) -> CalibrationProfile | None:
    if not path.exists():
        return None
    from simulator.errors import load_yaml_model

    return load_yaml_model(path, CalibrationProfile)


def render(prof: CalibrationProfile) -> str:
    """The YAML text of a calibration file (stable key order, 8 significant digits)."""
    data = prof.model_dump(mode="json")
    coeffs = data["coefficients"]
    for k, v in coeffs.items():
        if isinstance(v, dict):  # group-size tables: integer keys, as written by hand
            coeffs[k] = {int(n): x for n, x in v.items()}
    return _HEADER + yaml.safe_dump(data, sort_keys=False, width=100, allow_unicode=True)


def write_profile(prof: CalibrationProfile, out_dir: Path | None = None,
                  date: str | None = None) -> Path:
    """Write ``prof`` to ``<out_dir>/<gpu>__vllm-<family>.yaml``.

    When the file exists with the same data and method and coefficients within :data:`TOL`, it is
    left exactly as it is (date, coefficients' last digits and part B's ``validation`` included),
    so a rerun is byte-identical; ``date`` then only restamps the date. Otherwise the file is
    replaced, dated ``date`` or today, with an empty ``validation`` (the held-out error of other
    coefficients no longer applies).
    """
    path = calibration_path(prof.gpu, prof.vllm_family, out_dir)
    old = _read(path)
    if old is not None and not changed_coefficients(old.coefficients, prof.coefficients) \
            and old.provenance.data == prof.provenance.data \
            and old.provenance.method == prof.provenance.method:
        prof = old
    if date is not None:
        prof = prof.model_copy(update={
            "provenance": prof.provenance.model_copy(update={"date": date})})
    path.parent.mkdir(parents=True, exist_ok=True)
    text = render(CalibrationProfile.model_validate(prof.model_dump()))
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def split_v1_v0(f: GpuFit) -> list[GpuFit]:
    """An NVIDIA fit whose overheads come from the pre-V1 LLM-Inference-Bench engine → the same
    kernels as two files: the vLLM-0.24 family with ``V1_OVERHEADS`` (prior) and ``V0_FAMILY``
    with the fitted (or copied) pre-V1 overheads."""
    p = f.profile
    v0_method = (p.provenance.method + f" Family {V0_FAMILY}: these overheads describe a pre-V1 "
                 "vLLM engine (synchronous scheduling; LLM-Inference-Bench, 2024); choose it with "
                 f"step_time.calibration: {V0_FAMILY} for vLLM < 0.8 (the dstack-405b runs used "
                 "0.6.3).")
    v0 = p.model_copy(update={"vllm_family": V0_FAMILY, "provenance": p.provenance.model_copy(
        update={"method": v0_method})})
    return [v1_prior(f, f"the fitted pre-V1 values are kept in {p.gpu}__vllm-{V0_FAMILY}.yaml"),
            GpuFit(v0, [*f.notes, f"family {V0_FAMILY}: pre-V1 overheads"])]


def v1_prior(f: GpuFit, pre_v1_note: str) -> GpuFit:
    """``f`` with its CPU overheads replaced by the vLLM V1 prior :data:`V1_OVERHEADS`; the
    method says where the fitted pre-V1 values went (``pre_v1_note``)."""
    p = f.profile
    v1_method = (p.provenance.method + " step_overhead_us, per_seq_overhead_us and "
                 "per_token_overhead_us are then replaced by a vLLM V1 PRIOR (not a fit): "
                 f"{', '.join(f'{k} = {v:g}' for k, v in V1_OVERHEADS.items())}. V1 overlaps "
                 "scheduling, input preparation and output processing with the GPU's previous "
                 "step (async scheduling in the engine-core process), and NVIDIA's aiconfigurator "
                 "prices a vLLM step as the sum of its kernel times with no CPU term "
                 f"(sdk/backends/vllm_backend.py run_agg); {pre_v1_note}. layer_overhead_us (GPU "
                 "kernels) is kept.")
    v1 = p.model_copy(update={
        "coefficients": p.coefficients.model_copy(update=V1_OVERHEADS),
        "provenance": p.provenance.model_copy(update={"method": v1_method})})
    return GpuFit(v1, [*f.notes, "CPU overheads: vLLM V1 prior"])


def older_families(want: Sequence[str]) -> dict[str, list[GpuFit]]:
    """The :data:`OLDER_KERNEL_VERSIONS` families of the NVIDIA GPUs in ``want``: the same fit on
    an older kernel-table folder (H200 reusing that fit's H100 overheads), always with the V1 CPU
    prior (with :data:`V1_OVERHEAD_PRIOR`); their pre-V1 overheads are not written (family
    :data:`V0_FAMILY` keeps the newest kernels)."""
    out: dict[str, list[GpuFit]] = {g: [] for g in ("H100-SXM", "H200-SXM") if g in want}
    if not out:
        return out
    versions = sorted({v for g in out for v in OLDER_KERNEL_VERSIONS.get(g, ())},
                      key=ds._version_key)
    for version in versions:
        h100 = fit_nvidia("H100-SXM", version=version)
        nv = {"H100-SXM": h100}
        if "H200-SXM" in out and version in OLDER_KERNEL_VERSIONS.get("H200-SXM", ()):
            nv["H200-SXM"] = fit_nvidia("H200-SXM", overhead_from=h100.profile, version=version)
        for g, f in nv.items():
            if g not in out or version not in OLDER_KERNEL_VERSIONS.get(g, ()):
                continue
            out[g].append(v1_prior(f, f"the pre-V1 values fitted with these kernels are not "
                                      f"written (family {V0_FAMILY} keeps the vLLM "
                                      f"{KERNEL_VERSION[g]} kernels)")
                          if V1_OVERHEAD_PRIOR else f)
    return out


def fit_all(gpus: Sequence[str] | None = None) -> list[GpuFit]:
    """Refit every GPU (or ``gpus``) that has data; MI325X follows MI300X, H200 follows H100.
    Per NVIDIA GPU: the newest family, ``V0_FAMILY``, then the :data:`OLDER_KERNEL_VERSIONS`
    families, oldest first."""
    want = [g for g in GPUS if gpus is None or g in gpus]
    fits: dict[str, GpuFit] = {}
    extra: dict[str, GpuFit] = {}
    older = older_families(want)
    h100: GpuFit | None = None
    if "H100-SXM" in want or "H200-SXM" in want:
        h100 = fit_nvidia("H100-SXM")
        nv = {"H100-SXM": h100}
        if "H200-SXM" in want:
            nv["H200-SXM"] = fit_nvidia("H200-SXM", overhead_from=h100.profile)
        for g, f in nv.items():
            if g not in want:
                continue
            if V1_OVERHEAD_PRIOR:
                fits[g], extra[g] = split_v1_v0(f)
            else:
                fits[g] = f
    if "MI300X" in want or "MI325X" in want:
        # The MI300X GEMM shape prior comes from this run's H100 kernel fit when there is one.
        mi = fit_mi300x(h100.profile if h100 is not None else None)
        if "MI300X" in want:
            fits["MI300X"] = mi
        if "MI325X" in want:
            fits["MI325X"] = derive_mi325x(mi.profile)
    return [f for g in want for f in (fits.get(g), extra.get(g), *older.get(g, []))
            if f is not None]


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def print_fits(profiles: Sequence[CalibrationProfile]) -> None:
    """Rich tables: coefficients per GPU, then residuals."""
    from rich.console import Console
    from rich.table import Table

    con = Console()
    if not con.is_terminal:
        con = Console(width=160)
    t = Table(title="fitted coefficients", show_edge=False)
    t.add_column("coefficient")
    for p in profiles:
        t.add_column(f"{p.gpu} ({p.vllm_family})", justify="right")
    def cell(v: Any) -> str:
        if isinstance(v, dict):
            return " ".join(f"{k}:{x:.3g}" for k, x in v.items()) or "-"
        return "-" if v is None else str(v).lower() if isinstance(v, bool) else f"{v:.4g}"

    for name in Calibration.model_fields:
        t.add_row(name, *(cell(getattr(p.coefficients, name)) for p in profiles))
    con.print(t)
    r = Table(title="fit residuals (|rel. error| on the fit set)", show_edge=False)
    r.add_column("gpu")
    r.add_column("fit set")
    r.add_column("median %", justify="right")
    r.add_column("p90 %", justify="right")
    r.add_column("points", justify="right")
    for p in profiles:
        res = p.provenance.residuals
        tags = [k.removesuffix("_median_abs_rel_err_pct") for k in res
                if k.endswith("_median_abs_rel_err_pct")]
        for tag in tags:
            r.add_row(p.gpu, tag, f"{res[f'{tag}_median_abs_rel_err_pct']:.2f}",
                      f"{res.get(f'{tag}_p90_abs_rel_err_pct', float('nan')):.2f}",
                      f"{res.get(f'{tag}_points', float('nan')):.0f}")
        for k, v in res.items():
            if k.endswith("_mean_abs_rel_err_pct"):
                r.add_row(p.gpu, k.removesuffix("_abs_rel_err_pct"), f"{v:.2f}", "", "")
    con.print(r)


def calibrate_command(
    gpu: Annotated[str | None, typer.Option(
        help="Refit only this GPU (H100-SXM, H200-SXM, MI300X, MI325X); default: every GPU with "
             "data. With --from-bench: the GPU the benchmark ran on.")] = None,
    from_bench: Annotated[Path | None, typer.Option(
        "--from-bench", help="Fit on a vLLM benchmark_serving result JSON (per-request details) "
                             "instead of the shared data.")] = None,
    model: Annotated[str | None, typer.Option(help="Model profile of --from-bench.")] = None,
    tp: Annotated[int, typer.Option(help="Tensor-parallel size of --from-bench.")] = 8,
    weight_dtype: Annotated[str | None, typer.Option(
        help="Weight dtype of --from-bench (default: the model's native dtype).")] = None,
    kv_dtype: Annotated[str, typer.Option(help="KV-cache dtype of --from-bench.")] = "auto",
    max_num_seqs: Annotated[int, typer.Option(help="Engine max_num_seqs of --from-bench.")] = 256,
    max_num_batched_tokens: Annotated[int, typer.Option(
        help="Engine max_num_batched_tokens of --from-bench.")] = 8192,
    family: Annotated[str, typer.Option(
        help="vLLM family name the --from-bench file is written under.")] = "custom",
    out: Annotated[Path | None, typer.Option(
        help="Directory to write calibration files to (default: hardware_profiles/calibration; "
             "with --from-bench: the user data folder, $XDG_DATA_HOME/servesim/calibration).")
    ] = None,
    date: Annotated[str | None, typer.Option(
        help="Date to stamp (default: keep the file's date when nothing changed, else today).")
    ] = None,
    check: Annotated[bool, typer.Option(
        help="Refit and exit 1 if any coefficient differs from the committed file by > 1e-6 "
             "relative; write nothing.")] = False,
) -> None:
    """Fit the step-time model on measurements and write hardware_profiles/calibration/*.yaml."""
    try:
        if from_bench is not None:
            if gpu is None or model is None:
                raise ConfigError("--from-bench needs --gpu and --model (and --tp, --weight-dtype)")
            prof, info = fit_from_benchmark(from_bench, gpu, model, tp, weight_dtype,
                                            kv_dtype=kv_dtype, max_num_seqs=max_num_seqs,
                                            max_num_batched_tokens=max_num_batched_tokens,
                                            family=family)
            profiles = [prof]
            typer.echo("  ".join(f"{k}={v:.1f}" for k, v in info.items()))
        else:
            if gpu is not None:
                known = {g.lower(): g for g in GPUS}
                if gpu.lower() not in known:
                    raise ConfigError(f"--gpu: no calibration data for '{gpu}'; known: "
                                      f"{', '.join(GPUS)}")
                gpu = known[gpu.lower()]
            try:
                fits = fit_all([gpu] if gpu else None)
            except ds.DataMissing as e:
                raise ConfigError(str(e)) from None
            profiles = [f.profile for f in fits]
    except ConfigError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    print_fits(profiles)
    if from_bench is not None and out is None:
        # NOTE: a user's fit goes to their data folder, never into the installed package (lost on
        # reinstall, read-only in a system install); step_time.calibration finds it by family.
        from simulator.profiles import user_calibration_dir

        out = user_calibration_dir()
    if check:
        bad = []
        for p in profiles:
            old = _read(calibration_path(p.gpu, p.vllm_family, out))
            if old is None:
                bad.append(f"{p.gpu}__vllm-{p.vllm_family}: no committed file")
                continue
            diff = changed_coefficients(old.coefficients, p.coefficients)
            if diff:
                bad.append(f"{p.gpu}__vllm-{p.vllm_family}: {', '.join(diff)} changed")
        if bad:
            typer.echo("calibration drift: " + "; ".join(bad), err=True)
            raise typer.Exit(1)
        typer.echo("calibration files match the refit")
        return
    for p in profiles:
        path = write_profile(p, out, date)
        typer.echo(f"wrote {path}")
        if from_bench is not None:
            typer.echo(f"use it with --set step_time.calibration={p.vllm_family} (fleet.gpu "
                       f"{p.gpu}) or --set step_time.calibration={path}")
