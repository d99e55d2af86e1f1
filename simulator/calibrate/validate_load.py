"""Production-load validation suites: offline and Poisson serving with hundreds of running
sequences per GPU — the regime a capacity plan is decided at.

What this models: the measured runs below, each rebuilt as a :class:`~simulator.config.Scenario`
with the run's model, precision, GPU, parallelism, engine flags and traffic, simulated with the
ordinary :func:`simulator.run.simulate` and reduced the way the benchmark reduced its requests.
None of these measurements is used by any fit (``simulator.calibrate.fit``); where a fit uses other
versions of the same source, the split is stated per suite.

``rocm-throughput``
    ROCm's vLLM dev-docker MI300X offline throughput (``benchmark_throughput.py``, 8×MI300X TP8,
    Llama-3.1-70B/405B FP8 weights and FP8 KV, 500–3,200 prompts submitted at once with
    ``max_num_seqs`` = prompts, fixed input/output lengths), vLLM versions held out of the MI300X
    fit (the same split as ``rocm-mi300x``: :func:`validate.rocm_version_split`). The README's
    "Throughput (tokens/s)" does not say whether it counts prompt tokens; it is read as the MI300X
    fit reads it (``fit_rocm.ROCM_THROUGHPUT_TOTAL``: output tokens/s, the reading under which the fit
    versions' rows agree with each other); engine flags as the README's throughput command
    (``--max-num-batched-tokens 131072``, ``--max-model-len 8192``, chunked prefill off).

``mlperf``
    MLPerf Inference v5.0 open division, Krai's vLLM submissions (``benchmarks/mlperf``): Llama-2-70B
    FP8 (dynamic quantisation from fp16) on 8×H200 (vLLM 0.6.4, 0.6.4 + FlashInfer, 0.7.3) and
    8×MI300X (vLLM 0.6.4 and 0.7.3 ROCm builds), eight single-GPU engines (TP1 × DP8) each, with
    the run's ``max_num_seqs``, ``max_num_batched_tokens`` and ``gpu_memory_utilization``. One
    engine is simulated with an eighth of the 49,152 samples; throughput is compared for the
    system (× 8). Offline: every sample at t = 0. Server: Poisson at ``target_qps`` / 8 per engine
    (LoadGen's Poisson stream, spread over the eight engines by Krai's client), TTFT and TPOT
    (mean and p99, as LoadGen reports them) and completed tokens/s. Assumed, because the data does
    not state it: KV cache ``auto`` (fp16 for this fp16 checkpoint), the OpenOrca input lengths
    (< 1,024 tokens; lognormal mean :data:`MLPERF_ISL_MEAN`), the output lengths (lognormal with the
    run's measured mean output per sample from its accuracy log, ≥ 3 and < 1,024 tokens). The
    engine is V0 (vLLM < 0.8) with its default for a 4k-context model, chunked prefill off
    (``engine.scheduler: v0``: prefills first, whole prompts, never mixed with decodes). The H200
    runs (vLLM < 0.8, the V0 engine) use the GPU's ``v0`` family; the MI300X runs its ``0.8``
    family (the only one).

Every point also records the simulated load it ran at — the time-weighted mean number of
running sequences per GPU (running sequences of a replica / its TP size) — and
:func:`load_regime` bins it (≤ 32, 33–128, 129–512, > 512) so that a miss can be located.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from simulator.calibrate import datasets as ds
from simulator.cluster.spec import APIServerConfig
from simulator.config import (
    EngineConfig,
    FixedLength,
    FleetConfig,
    LognormalLength,
    MetricsConfig,
    ModelConfig,
    OfflineArrivals,
    PoissonArrivals,
    Scenario,
    StepTimeConfig,
    WorkloadConfig,
)

REGIMES: tuple[tuple[str, float], ...] = (
    ("≤ 32", 32.0), ("33–128", 128.0), ("129–512", 512.0), ("> 512", math.inf))
"""Load regimes by running sequences per GPU (label, upper bound)."""

ROCM_THROUGHPUT_ENGINE: dict[str, Any] = dict(
    max_num_batched_tokens=131072, max_model_len=8192, enable_chunked_prefill=False,
    enable_prefix_caching=False, gpu_memory_utilization=0.9)
"""Engine flags of the ROCm README's benchmark_throughput command."""
FAST_ROCM_THROUGHPUT = ((128, 2048), (2048, 2048))
"""Fast subset of rocm-throughput: the newest held-out version, 70B, these (input, output)."""

MLPERF_ISL_MEAN = 200.0
"""Assumed mean input tokens of the MLPerf Llama-2-70B OpenOrca set (not published; < 1,024)."""
MLPERF_LEN_CV = 1.0
"""Assumed coefficient of variation of the MLPerf input and output lengths (not published)."""
MLPERF_DP = 8
"""Engines per MLPerf system (TP1 × DP8)."""
MLPERF_GPU = {"NVIDIA H200-SXM-141GB": "H200-SXM", "AMD Instinct MI300X 192GB HBM3": "MI300X"}
MLPERF_FAMILY = {"H200-SXM": "v0", "MI300X": "auto"}
"""Calibration family per GPU for the MLPerf runs (vLLM 0.6.4 / 0.7.3)."""

_METRICS: dict[str, Any] = dict(record_steps=False, record_itl=False, sample_interval_s=5.0)


def load_regime(running_per_gpu: float) -> str:
    """The load regime label of a mean running-sequences-per-GPU figure ("" if unknown)."""
    if not math.isfinite(running_per_gpu):
        return ""
    for label, hi in REGIMES:
        if running_per_gpu <= hi:
            return label
    return REGIMES[-1][0]


def running_per_gpu(timeseries: pd.DataFrame, tp: int) -> float:
    """Mean running sequences per GPU over a run's gauge samples (``num_requests_running`` of
    each replica, averaged over the samples taken while anything ran), divided by TP."""
    if timeseries.empty or "num_requests_running" not in timeseries:
        return float("nan")
    run = timeseries["num_requests_running"].to_numpy(dtype=float)
    busy = run[run > 0]
    return float(busy.mean()) / max(tp, 1) if busy.size else 0.0


# --------------------------------------------------------------------------------------------
# rocm-throughput
# --------------------------------------------------------------------------------------------

def rocm_throughput_scenario(model: str, num_prompts: int, max_num_seqs: int, input_len: int,
                             output_len: int, name: str = "rocm-throughput") -> Scenario:
    """benchmark_throughput on 8×MI300X: ``num_prompts`` fixed-length prompts at t = 0."""
    eng = dict(ROCM_THROUGHPUT_ENGINE)
    eng["max_model_len"] = max(eng["max_model_len"], input_len + output_len)
    return Scenario(
        name=name, seed=0,
        model=ModelConfig(name=model, weight_dtype="fp8", kv_cache_dtype="fp8"),
        fleet=FleetConfig(gpu="MI300X", tp=8, replicas=1),
        # benchmark_throughput.py drives vLLM's offline LLM class: no API server.
        engine=EngineConfig(max_num_seqs=max_num_seqs, **eng,
                            api_server=APIServerConfig(enabled=False)),
        workload=WorkloadConfig(arrival=OfflineArrivals(), input_len=FixedLength(value=input_len),
                                output_len=FixedLength(value=output_len),
                                num_requests=num_prompts),
        metrics=MetricsConfig(**_METRICS),
    )


def build_rocm_throughput(case: Callable[..., Any],
                          version_split: Callable[[list[str]], tuple[list[str], str]]
                          ) -> tuple[list[Any], list[Any], list[str]]:
    """Cases of ``rocm-throughput``: held-out versions' offline throughput rows, built with
    ``case`` (validate.Case) and split by ``version_split`` (validate.rocm_version_split), which
    validate passes in (this module sits below it)."""
    Case, rocm_version_split = case, version_split
    df = ds.rocm_mi300x_throughput()
    versions = sorted(df["vllm_version"].unique(), key=ds._version_key)
    held, source = rocm_version_split(sorted(ds.rocm_mi300x_latency()["vllm_version"].unique(),
                                             key=ds._version_key))
    held = [v for v in held if v in versions]
    sel = df[df["vllm_version"].isin(held) & df["latest_in_version"] & ~df["carried_over"]]
    newest = max(held, key=ds._version_key) if held else None
    cases = []
    for row in sel.to_dict(orient="records"):
        size = "405B" if "405B" in str(row["model"]) else "70B"
        model = f"Llama-3.1-{size}"
        i, o = int(row["input_len"]), int(row["output_len"])
        n, mns = int(row["num_prompts"]), int(row["max_num_seqs"])
        v = str(row["vllm_version"])
        pid = f"rocm-tput-{v}-{size}-in{i}-out{o}-n{n}"
        sc = rocm_throughput_scenario(model, n, mns, i, o, name=pid)
        fast = v == newest and size == "70B" and (i, o) in FAST_ROCM_THROUGHPUT
        info = {"model": model, "vllm": v, "prompts": n, "max_num_seqs": mns, "input": i,
                "output": o, "tp": 8}
        cases.append(Case("rocm-throughput", "MI300X", pid, f"{size} {i}/{o} n{n} v{v}",
                          "throughput", sc, {"throughput": float(row["throughput_tok_s"])},
                          fast=fast, info=info))
    notes = [f"held-out versions: {', '.join(held) or 'none'} ({source})",
             f"{len(cases)} points (newest value per version and config; values carried over "
             f"from an older README version dropped); measured tokens/s read as output "
             f"tokens/s (fit_rocm.ROCM_THROUGHPUT_TOTAL); engine: max_num_batched_tokens 131072, "
             f"chunked prefill off, FP8 KV"]
    return cases, [], notes


# --------------------------------------------------------------------------------------------
# mlperf
# --------------------------------------------------------------------------------------------

def mlperf_scenario(row: dict[str, Any], gpu: str, name: str) -> Scenario:
    """One engine of a Krai MLPerf v5.0 system (TP1), an eighth of the samples."""
    n = int(row["samples_issued"]) // MLPERF_DP
    out_mean = float(row["accuracy_run_tokens_per_sample"])
    if str(row["scenario"]) == "offline":
        arrival: Any = OfflineArrivals()
    else:
        arrival = PoissonArrivals(rate=float(row["server_target_qps"]) / MLPERF_DP)
    mns = int(row["max_num_seqs"])
    mbt = int(row["max_num_batched_tokens"])
    return Scenario(
        name=name, seed=0,
        model=ModelConfig(name="Llama-2-70B", weight_dtype="fp8"),
        fleet=FleetConfig(gpu=gpu, tp=1, replicas=1),
        engine=EngineConfig(max_num_seqs=mns, max_num_batched_tokens=max(mbt, 2048),
                            max_model_len=2048, scheduler="v0", enable_chunked_prefill=False,
                            gpu_memory_utilization=float(row["gpu_memory_utilization"]),
                            # Krai's SUT is an OpenAI-API client of `vllm serve` (README).
                            api_server=APIServerConfig()),
        step_time=StepTimeConfig(calibration=MLPERF_FAMILY[gpu]),
        workload=WorkloadConfig(
            arrival=arrival,
            input_len=LognormalLength(mean=MLPERF_ISL_MEAN, cv=MLPERF_LEN_CV, min=1, max=1023),
            output_len=LognormalLength(mean=out_mean, cv=MLPERF_LEN_CV, min=3, max=1023),
            num_requests=n),
        metrics=MetricsConfig(**_METRICS),
    )


def build_mlperf(case: Callable[..., Any]) -> tuple[list[Any], list[Any], list[str]]:
    """Cases of ``mlperf``: the Llama-2-70B Offline and Server runs, built with ``case``."""
    Case = case
    df = ds.mlperf_results()
    df = df[df["model"] == "llama2-70b-fp8_dyn"]
    cases = []
    for row in df.to_dict(orient="records"):
        gpu = MLPERF_GPU[str(row["gpu"])]
        system = str(row["source_path"]).split("/")[3]
        scen = str(row["scenario"])
        pid = f"mlperf-{system}-{scen}"
        measured = {"throughput": float(row["tokens_per_s"])}
        if scen == "server":
            measured |= {"ttft_mean": float(row["ttft_mean_ms"]),
                         "ttft_p99": float(row["ttft_p99_ms"]),
                         "tpot_mean": float(row["tpot_mean_ms"]),
                         "tpot_p99": float(row["tpot_p99_ms"])}
        info = {"vllm": str(row["engine_version"]).split("+")[0].split(".dev")[0],
                "system": system, "scenario": scen, "max_num_seqs": int(row["max_num_seqs"]),
                "max_num_batched_tokens": int(row["max_num_batched_tokens"]), "tp": 1,
                "dp": MLPERF_DP}
        if scen == "server":
            info["qps"] = float(row["server_target_qps"])
        cases.append(Case("mlperf", gpu, pid, f"Llama-2-70B FP8 {scen} {system}",
                          "throughput", mlperf_scenario({str(k): v for k, v in row.items()}, gpu,
                                                        pid), measured,
                          fast=scen == "offline", info=info))
    notes = [f"{len(cases)} runs: one TP1 engine simulated with 1/{MLPERF_DP} of the samples, "
             f"throughput × {MLPERF_DP}; assumed input lengths lognormal mean "
             f"{MLPERF_ISL_MEAN:g} (cv {MLPERF_LEN_CV:g}, < 1,024), outputs lognormal with the "
             f"run's measured mean per sample; KV cache auto (fp16); H200 on the v0 family "
             f"(vLLM 0.6.4/0.7.3)"]
    return cases, [], notes


# --------------------------------------------------------------------------------------------
# Reducing a simulated throughput case
# --------------------------------------------------------------------------------------------

def reduce_throughput(case: Any, res: Any) -> dict[str, float]:
    """Predicted statistics of a ``throughput`` case, as its benchmark reduced them."""
    req = res.requests
    span = float(req["finish_s"].max()) - float(req["arrival_s"].min())
    out: dict[str, float] = {}
    if case.suite == "rocm-throughput":
        from simulator.calibrate.fit_rocm import ROCM_THROUGHPUT_TOTAL

        toks = float(req["output_tokens"].sum())
        if ROCM_THROUGHPUT_TOTAL:
            toks += float(req["input_tokens"].sum())
        out["throughput"] = toks / span
    else:
        out["throughput"] = float(req["output_tokens"].sum()) / span * MLPERF_DP
        ttft = req["ttft_s"].to_numpy(dtype=float) * 1000
        tpot = req["tpot_s"].dropna().to_numpy(dtype=float) * 1000
        if ttft.size:
            out["ttft_mean"] = float(np.mean(ttft))
            out["ttft_p99"] = float(np.percentile(ttft, 99))
        if tpot.size:
            out["tpot_mean"] = float(np.mean(tpot))
            out["tpot_p99"] = float(np.percentile(tpot, 99))
    return out
