"""MI300X step-time fit on ROCm's vLLM dev-docker tables, and the MI325X prior derived from it.

Reads: ROCm's vLLM dev-docker README tables for MI300X (``calibration/rocm-vllm-devdocker``
under the shared data folder, its ``SOURCE.txt`` naming the repository and commit) — the
fixed-batch ``benchmark_latency`` rows (``datasets.rocm_mi300x_latency``) and the offline
``benchmark_throughput`` rows (``datasets.rocm_mi300x_throughput``) of the vLLM versions in
:data:`MI300X_FIT_VERSIONS` only (the rest are held out for ``servesim validate``); and the
committed ``H100-SXM__vllm-0.24`` calibration, whose GEMM shape law is carried over as a derived
prior (:func:`mi300x_shape_prior`). MI325X reads nothing: it is MI300X's fit scaled by published
ratios (:func:`derive_mi325x`).

**MI300X** — no kernel tables: every coefficient that matters for the measured runs is fitted, as
a maximum a-posteriori estimate around documented priors, on ROCm's vLLM dev-docker fixed-batch
latencies (Llama-3.1-70B/405B FP8, FP8 KV, TP8, batch 1–128, input 128/2048, output 2048) of
vLLM 0.6.6–0.8.5 (:data:`MI300X_FIT_VERSIONS`); vLLM 0.9.0.1, 0.9.1 and 0.10.0 are left for the
``rocm-mi300x`` validation suite. Each latency is predicted by replaying the batch through the
scheduler (prefill + 2048 decode steps) with the step model. LLM-Inference-Bench's MI300X vLLM
rows (bf16, an early 2024 ROCm vLLM) were checked and left out: they run 2–8× slower than the
dev-docker data implies, so they describe another software stack.

**MI325X** — no measurements: a derived prior, MI300X's fit with the bandwidth-bound terms scaled
by the spec-sheet HBM ratio (6.0 / 5.3 TB/s; same compute peaks and platform).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from simulator.calibrate import datasets as ds
from simulator.calibrate.fit_core import (
    GpuFit,
    Param,
    StaticCase,
    _commit,
    _make_case,
    _round,
    _rounded,
    _StaticPredictor,
    _today,
    fit_params,
    residual_stats,
)
from simulator.profiles import (
    Calibration,
    CalibrationProfile,
    CalibrationProvenance,
    GpuProfile,
    find_calibration,
    load_gpu,
)

#: ROCm dev-docker vLLM versions the MI300X fit uses; the rest (0.9.0.1, 0.9.1, 0.10.0) are held
#: out for validation.
MI300X_FIT_VERSIONS = ("0.6.6", "0.7.3", "0.8.3", "0.8.5")
MI300X_FAMILY = "0.8"

ROCM_MODELS = {
    "Llama-3.1-70B-Instruct-FP8-KV": "Llama-3.1-70B",
    "Llama-3.1-405B-Instruct-FP8-KV": "Llama-3.1-405B",
}


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
