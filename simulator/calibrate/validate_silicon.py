"""Validation suites ``silicon-dense`` and ``silicon-moe``: aiconfigurator's measured vLLM
serving points, simulated as they were measured.

Reads: ``datasets.silicon_points("vllm")`` — the measured vLLM rows of aiconfigurator's silicon
data (``calibration/aiconfigurator`` under the shared data folder; its ``SOURCE.txt`` names the
repository and commit), deduplicated, aggregated mode, H100 and H200. None of it is used by the
step-time fit. The calibration families it picks from are the GPU's
``hardware_profiles/calibration/<gpu>__vllm-<x.y>.yaml`` files.

The client, as the tool that collected the rows runs it. aiconfigurator benchmarks a deployment with
aiperf in concurrency mode (``src/aiconfigurator/eval/benchmarks/genai_perf_runner.py``, which
switched from genai-perf to aiperf on 2025-10-14 and was removed on 2026-03-03, and the generator's
``bench_run.sh`` after it): ``--concurrency c``, ``--warmup-request-count 2c``, ``--request-count
10c`` (the generator's script: 20c), fixed ISL/OSL (stddev 0, ``ignore_eos``, ``min_tokens =
max_tokens = OSL``), streaming. aiperf's credit phases (``aiperf/timing/credit_issuing_strategy.py``)
wait until every warm-up request has returned before the profiling phase starts, and the
concurrency-mode strategy (``request_rate_strategy.py``) then issues ``c`` requests at once: the
measured mean counts a fresh burst of ``c`` prompts arriving together, then closed-loop waves.
Each row is replayed that way (protocol ``aiperf``): ``c`` clients started together for the
burst, and the run's mean taken as ``(burst wave + (K − 1) × steady wave) / K`` with ``K`` =
``AIPERF_REQUESTS_PER_CLIENT`` (:func:`burst_mean`). The drained warm-up itself is not simulated:
it leaves an empty engine (random prompts share no prefix; the test suite checks that a simulated
warm-up changes nothing).

One source is different: the ``aic-auto-gap-analysis`` rows (vLLM 0.12 on NVIDIA Dynamo's
vllm-runtime image) cannot have counted a start-up burst: H200 Llama-3.1-8B FP8 c96 4000/500
measures a 121 ms mean TTFT, while its burst alone (384k prompt tokens, ≥ 3.1 s of prefill at
100 % of the FP8 peak) would add ≥ 155 ms to a 10-wave mean. Their protocol is not recorded; they
are compared as a steady-state measurement (protocol ``steady``: the first wave left out).
The rest are consistent with the burst: the H100 Llama-3.1-70B FP8 TP8 1024/1024 rows measure 109,
137 and 185 ms at c16, c32 and c64, which after taking out one simulated burst wave in ten leaves
the same ≈ 55 ms steady-state TTFT at every concurrency.

The front end is modelled (``engine.api_server`` on, the default priors of
:mod:`simulator.cluster.frontend`): the rows ran ``vllm serve`` (or Dynamo's front end) behind an
HTTP client. Throughput is not in the file; it is derived for measured and predicted alike by
Little's law on a closed loop: ``c × OSL / (TTFT + (OSL − 1) × TPOT)`` output tokens/s.

Steady state: desynchronised clients. The simulated clients are deterministic: fixed-length
requests that finish in the same step come back together, and short prompts that fit one step's
token budget would prefill together wave after wave (the API server's serial tokenisation splits a
wave once, into a pattern that then repeats). Real runs do not stay synchronised: the TP8 rows above
leave a single prefill's TTFT in steady state at every concurrency, which only clients spread over
the request cycle give. What spreads them (client turnaround, HTTP, GC pauses) is not measured in
the data, so the steady wave is simulated from clients started evenly over one request cycle
(:func:`steady_prediction`: no parameter, the fully mixed end) and the burst wave from clients
started together. The lock-step steady wave (wave 2 of the burst run) is reported beside it
(``ttft_mean_lockstep``; the report counts the measurements inside, below and above the
[desynchronised, lock-step] bracket: :func:`summarize_ttft_bracket`).

The first visible token: aiperf's TTFT ends at the first streamed chunk with content or reasoning
(it drops the others: ``aiperf/parsers/openai_parsers.py``), so tokens a model's chat format opens
with and the server's parser streams to no one (gpt-oss's harmony header, 3; Qwen3's ``<think>``,
1; the model profile's ``hidden_output_tokens``) move it by that many inter-token times — which
the simulator's ``ttft_s`` already counts.

Engine flags: vLLM's serving defaults on ≥ 70 GB GPUs (``max_num_batched_tokens`` 8192,
``max_num_seqs`` 1024, chunked prefill and prefix caching on, ``gpu_memory_utilization`` 0.9),
``max_model_len`` = ISL + OSL. Weights: FP8/FP4 where the row says so, bf16 where the
precision is blank; KV cache bf16 (FP8 KV is not recorded for any row).

Points with a measured mean TTFT above ``KV_QUEUE_TTFT_S`` (10 s) are simulated and listed,
but left out of the summary statistics (flag ``kv-queue``): their TTFT is time spent waiting
for KV-cache space behind other clients. That wait is the number of admission rounds × the
service time of a round, so it jumps discontinuously with the KV capacity (a 5 % capacity
error changes how many of c requests fit at once) and scales with the benchmark's request
count, which the data does not record; the point then measures the queue, not the step-time
model the summary is meant to judge.

MoE (``silicon-moe``): all experts resident, FLOPs from active parameters. Expert parallelism
is NOT modelled — experts are sharded by TP. A row whose layout is EP over the same GPUs as
TP (``moe_tp × ep == tp``, ``dp == 1``, e.g. MiniMax TP4 EP4) is simulated as TP (flag
``ep-as-tp``: the per-rank bytes and FLOPs are the same under uniform routing, the all-to-all
is costed as an all-reduce). Rows with attention data parallelism (``dp > 1``) or an
inconsistent layout (``tp × dp ≠ moe_tp × ep``, e.g. the Qwen3-235B gap-analysis rows labelled
tp1/moe_tp2) are skipped and counted. Kimi-K2.5 (no model profile) is not in any suite.
MiniMax-M2.5 is simulated with the MiniMax-M2 profile (same architecture).

Calibration family (:func:`silicon_calibration`), chosen by the vLLM version the row
RECORDED, never by its outcome: the oldest of the GPU's kernel-table families
(``hardware_profiles/calibration/<gpu>__vllm-<x.y>.yaml``, fitted on aiconfigurator's vLLM
0.14.0, 0.19.0 and 0.24.0 tables) whose version is ≥ the row's major.minor — 0.11.x and 0.12.x
→ ``0.14``; 0.15–0.19 → ``0.19``; newer than every family, unknown (the Llama-3.1-70B rows
record none) or not a release (dev, rc, nightly builds) → the newest (``0.24``, what ``auto``
picks). The kernels of a measurement's own vLLM are the best physics we have for it; there
are no tables for 0.11/0.12 themselves, and the next newer ones are the closest in time. The
per-point table names the family each point ran with (column ``calibration``). Same
principle as ``dstack-405b`` (:mod:`validate_dstack`; family ``v0`` for its recorded vLLM
0.6.3).
With ``FAMILY_BY_VERSION`` False every row runs on the newest family. On the committed data
the rule does not lower the error on balance (it helps Qwen3-32B bf16 and Qwen3-235B, hurts
gpt-oss, MiniMax on 0.18 and the FP8 dense rows; both sets of numbers: README, Fidelity). It
is kept because a family is chosen by what was run, not by what fits.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from simulator.calibrate import datasets as ds
from simulator.calibrate.validate_base import (
    _QUIET_METRICS,
    SUITES,
    Case,
    PointResult,
    Skipped,
    _mean,
    pct_error,
)
from simulator.cluster.spec import APIServerConfig
from simulator.config import (
    ClosedLoopArrivals,
    EngineConfig,
    FixedLength,
    FleetConfig,
    MetricsConfig,
    ModelConfig,
    Scenario,
    StepTimeConfig,
    WorkloadConfig,
)
from simulator.errors import ConfigError

AIPERF_REQUESTS_PER_CLIENT = 10
"""Measured requests per client of a silicon row (aiconfigurator's aiperf runner: --request-count
10 × concurrency, after a drained --warmup-request-count 2 × concurrency)."""
STEADY_SOURCES = ("aic-auto-gap-analysis",)
"""Row sources compared as steady-state measurements (first wave left out; module docstring)."""
BURST_WAVES = 3
"""Waves of the burst run (:func:`silicon_scenario`): wave 1 = the burst, wave 2 = the lock-step
steady wave, wave 3 keeps it loaded (dropped for long outputs: :func:`burst_waves`)."""
LONG_OUTPUT_RATIO = 4
"""Points whose OSL is at least this × ISL run 2 burst waves (see :func:`burst_waves`)."""
RAMP_WAVES = 4
"""Waves simulated for the desynchronised steady state of a silicon point
(:func:`steady_prediction`): clients ramp in over one cycle (wave 1), wave 2 settles, wave 3 is
compared, wave 4 keeps it loaded. The ramped state repeats every cycle: 4, 5 and 8 waves agree to
the millisecond on the fast subset."""
KV_QUEUE_TTFT_S = 10.0
"""Silicon points with a measured mean TTFT above this are listed but not summarised (kv-queue)."""
FAMILY_BY_VERSION = True
"""Simulate each silicon row with the kernel family of its recorded vLLM version
(:func:`silicon_calibration`); False: every row on the GPU's newest family."""

#: silicon ``model`` → (suite, servesim model profile).
SILICON_MODELS: dict[str, tuple[str, str]] = {
    "Llama-3.1-8B": ("silicon-dense", "Llama-3.1-8B"),
    "Llama-3.1-70B": ("silicon-dense", "Llama-3.1-70B"),
    "Qwen3-32B": ("silicon-dense", "Qwen3-32B"),
    "gpt-oss-120b": ("silicon-moe", "gpt-oss-120b"),
    "Qwen3-235B-A22B": ("silicon-moe", "Qwen3-235B-A22B"),
    "MiniMax-M2.5": ("silicon-moe", "MiniMax-M2"),
}
SILICON_GPUS = ("H100-SXM", "H200-SXM")

#: Fast subset of the silicon suites: (gpu, model, weight dtype, tp, isl, osl, concurrency).
FAST_SILICON: frozenset[tuple[str, str, str, int, int, int, int]] = frozenset({
    ("H100-SXM", "Llama-3.1-70B", "fp8", 4, 1024, 1024, 16),
    ("H100-SXM", "Llama-3.1-70B", "fp8", 8, 8192, 1024, 32),
    ("H100-SXM", "Qwen3-32B", "bf16", 2, 1024, 128, 64),
    ("H100-SXM", "Qwen3-32B", "bf16", 4, 4096, 512, 16),
    ("H100-SXM", "Qwen3-32B", "fp8", 2, 4000, 1000, 48),
    ("H200-SXM", "Llama-3.1-70B", "fp8", 1, 1024, 1024, 8),
    ("H200-SXM", "Llama-3.1-70B", "fp8", 2, 8192, 1024, 32),
    ("H200-SXM", "Llama-3.1-70B", "fp8", 8, 1024, 1024, 64),
    ("H200-SXM", "Llama-3.1-8B", "fp8", 1, 4000, 500, 96),
    ("H200-SXM", "Llama-3.1-8B", "fp8", 2, 8000, 100, 24),
    ("H100-SXM", "gpt-oss-120b", "fp4", 2, 1024, 1024, 16),
    ("H100-SXM", "gpt-oss-120b", "fp4", 8, 8192, 1024, 64),
    ("H100-SXM", "MiniMax-M2.5", "fp8", 4, 1024, 1024, 32),
    ("H200-SXM", "gpt-oss-120b", "fp4", 1, 1024, 1024, 32),
    ("H200-SXM", "MiniMax-M2.5", "fp8", 8, 1024, 1024, 64),
    ("H200-SXM", "Qwen3-235B-A22B", "fp8", 4, 4000, 1000, 24),
})


def burst_mean(burst: float, steady: float, k: int = AIPERF_REQUESTS_PER_CLIENT) -> float:
    """Mean over an aiperf run of ``k × c`` requests that starts with a burst of ``c``: one wave
    in ``k`` is the burst."""
    return burst / k + steady * (k - 1) / k


def burst_waves(isl: int, osl: int) -> int:
    """Waves of ``c`` requests in a silicon point's burst run.

    NOTE: wave 3 exists only so that wave 2 decodes alongside the next wave's prefill chunks, as
    every steady-state wave of the benchmark does; without it wave 2's TPOT is too low by up to
    20 % for prefill-heavy points (70B TP4 8192/1024 c64). When the output is ≥ 4 × the prompt
    that interleaved prefill is a negligible share of the decode steps (1024/8192 c32: 0.2 % on
    TPOT, TTFT identical) and 2 waves suffice — these long-output points are 3/4 of the suites'
    simulation cost."""
    return 2 if osl >= LONG_OUTPUT_RATIO * isl else BURST_WAVES


def closed_loop_throughput(concurrency: int, osl: int, ttft_ms: float, tpot_ms: float) -> float:
    """Output tokens/s of ``concurrency`` closed-loop clients (Little's law): each client finishes
    one request of ``osl`` tokens every TTFT + (OSL − 1) × TPOT."""
    e2e_s = (ttft_ms + (osl - 1) * tpot_ms) / 1000.0
    return concurrency * osl / e2e_s if e2e_s > 0 else float("nan")


def _int(v: Any, default: int = 1) -> int:
    """Nullable integer from the silicon frame (NA → default)."""
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return default
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def _str(v: Any) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v)


def silicon_protocol(source: str) -> str:
    """How a silicon row's mean was taken, by its source (module docstring): ``steady`` (first
    wave left out) for :data:`STEADY_SOURCES`, else ``aiperf`` (every request of a run that
    starts with a burst of ``c``)."""
    return "steady" if any(source.startswith(p) for p in STEADY_SOURCES) else "aiperf"


_RELEASE_RE = re.compile(r"v?(\d+)\.(\d+)(?:\.\d+)*(?:\.post\d+)?")


def kernel_families(gpu: str) -> list[str]:
    """The numbered (``x.y``) calibration families of ``gpu``, oldest first (``v0``, ``custom``
    and the like are not kernel-table families)."""
    from simulator.profiles import list_calibrations

    fams = {c.vllm_family for c in list_calibrations()
            if c.gpu.lower() == gpu.lower() and re.fullmatch(r"\d+\.\d+", c.vllm_family)}
    return sorted(fams, key=lambda f: tuple(int(x) for x in f.split(".")))


def silicon_calibration(gpu: str, vllm_version: str, families: Sequence[str] | None = None
                        ) -> str:
    """Calibration family a silicon row is simulated with, from the vLLM version it recorded
    (module docstring): the oldest numbered family of ``gpu`` (``families``, default
    :func:`kernel_families`) whose major.minor is ≥ the row's; ``"auto"`` (the newest) when the
    version is unknown, not a release, or newer than every family, or when ``FAMILY_BY_VERSION``
    is off."""
    m = _RELEASE_RE.fullmatch(vllm_version.strip())
    if not FAMILY_BY_VERSION or m is None:
        return "auto"
    want = (int(m.group(1)), int(m.group(2)))
    fams = list(kernel_families(gpu) if families is None else families)
    at_or_after = [f for f in fams if tuple(int(x) for x in f.split(".")) >= want]
    if not at_or_after or at_or_after[0] == fams[-1]:
        return "auto"
    return at_or_after[0]


def silicon_scenario(*, model: str, weight_dtype: str, gpu: str, tp: int, isl: int, osl: int,
                     concurrency: int, name: str = "silicon", calibration: str = "auto"
                     ) -> Scenario:
    """The scenario a silicon point was measured with (see module docstring): ``c`` clients
    started together behind vLLM's API server (the burst run: :func:`burst_waves` waves);
    ``calibration``: the step-time calibration family (:func:`silicon_calibration`)."""
    return Scenario(
        name=name,
        seed=0,
        model=ModelConfig(name=model, weight_dtype=weight_dtype),  # type: ignore[arg-type]
        fleet=FleetConfig(gpu=gpu, tp=tp, replicas=1),
        engine=EngineConfig(max_num_seqs=1024, max_num_batched_tokens=8192,
                            max_model_len=isl + osl, enable_chunked_prefill=True,
                            enable_prefix_caching=True, gpu_memory_utilization=0.9,
                            api_server=APIServerConfig()),
        step_time=StepTimeConfig(calibration=calibration),
        workload=WorkloadConfig(arrival=ClosedLoopArrivals(concurrency=concurrency),
                                input_len=FixedLength(value=isl),
                                output_len=FixedLength(value=osl),
                                num_requests=burst_waves(isl, osl) * concurrency),
        metrics=MetricsConfig(**_QUIET_METRICS),
    )


def silicon_layout(row: dict[str, Any], moe: bool) -> tuple[int, tuple[str, ...], str]:
    """(tp to simulate, flags, skip reason) for a silicon row's parallel layout."""
    tp, pp, dp = _int(row.get("tp")), _int(row.get("pp")), _int(row.get("dp"))
    if pp > 1:
        return tp, (), f"pipeline parallel pp={pp} not modelled"
    if dp > 1:
        return tp, (), f"attention data parallel dp={dp} (ep={_int(row.get('ep'))}) not modelled"
    if not moe:
        return tp, (), ""
    moe_tp = _int(row.get("moe_tp"))
    ep = _int(row.get("ep"))
    moe_tp, ep = max(moe_tp, 1), max(ep, 1)
    if moe_tp * ep != tp * dp:
        return tp, (), (f"inconsistent layout tp={tp} dp={dp} vs moe_tp={moe_tp} ep={ep} "
                        f"(cannot tell what vLLM ran)")
    if ep > 1:
        return tp, ("ep-as-tp",), ""
    return tp, (), ""


def build_silicon(suite: str, points: pd.DataFrame | None = None
                  ) -> tuple[list[Case], list[Skipped], list[str]]:
    """Cases of ``silicon-dense`` or ``silicon-moe`` from ``datasets.silicon_points("vllm")``."""
    df = ds.silicon_points("vllm") if points is None else points
    df = df[(df["mode"] == "agg") & df["gpu"].isin(SILICON_GPUS)]
    cases: list[Case] = []
    skipped: list[Skipped] = []
    families: dict[str, int] = {}
    gpu_families: dict[str, list[str]] = {}
    n_other = 0
    for rec in df.to_dict(orient="records"):
        row = {str(k): x for k, x in rec.items()}
        entry = SILICON_MODELS.get(str(row["model"]))
        if entry is None:
            n_other += 1
            continue
        row_suite, profile = entry
        if row_suite != suite:
            continue
        gpu = str(row["gpu"])
        pid = str(row["point_id"])
        moe = suite == "silicon-moe"
        tp, flags, reason = silicon_layout(row, moe)
        if reason:
            skipped.append(Skipped(suite, gpu, pid, reason))
            continue
        wdt = _str(row.get("precision")) or "bf16"
        isl, osl, conc = int(row["isl"]), int(row["osl"]), int(row["concurrency"])
        version = _str(row.get("vllm_version")) or "?"
        ttft, tpot = float(row["ttft_ms"]), float(row["tpot_ms"])
        measured = {"ttft_mean": ttft, "tpot_mean": tpot,
                    "throughput": closed_loop_throughput(conc, osl, ttft, tpot)}
        excluded = ""
        if ttft > KV_QUEUE_TTFT_S * 1000:
            flags = (*flags, "kv-queue")
            excluded = f"measured TTFT {ttft / 1000:.0f} s > {KV_QUEUE_TTFT_S:g} s (kv-queue)"
        if version == "?":
            flags = (*flags, "version-unknown")
        key = (gpu, str(row["model"]), wdt, tp, isl, osl, conc)
        label = f"{row['model']} {wdt} tp{tp} {isl}/{osl} c{conc}"
        if gpu not in gpu_families:
            gpu_families[gpu] = kernel_families(gpu)
        family = silicon_calibration(gpu, "" if version == "?" else version, gpu_families[gpu])
        sc = silicon_scenario(model=profile, weight_dtype=wdt, gpu=gpu, tp=tp, isl=isl, osl=osl,
                              concurrency=conc, name=pid, calibration=family)
        families[family] = families.get(family, 0) + 1
        info = {"model": str(row["model"]), "dtype": wdt, "tp": tp, "isl": isl, "osl": osl,
                "concurrency": conc, "vllm": version,
                "protocol": silicon_protocol(_str(row.get("source")))}
        cases.append(Case(suite, gpu, pid, label, "closed_loop", sc, measured,
                          fast=key in FAST_SILICON, flags=flags, excluded=excluded, info=info))
    notes = [f"{len(cases)} points simulated, {len(skipped)} skipped "
             f"({_reason_counts(skipped)})" if skipped else f"{len(cases)} points simulated"]
    if families:
        notes.append("calibration family by the recorded vLLM version (oldest kernel family ≥ "
                     "it; unknown or newer → newest): "
                     + ", ".join(f"{'newest' if f == 'auto' else f} {n}"
                                 for f, n in sorted(families.items())))
    n_queue = sum(1 for c in cases if c.excluded)
    if n_queue:
        notes.append(f"{n_queue} points with measured mean TTFT > {KV_QUEUE_TTFT_S:g} s are "
                     f"simulated and listed but not summarised (kv-queue)")
    if suite == "silicon-moe":
        n_ep = sum(1 for c in cases if "ep-as-tp" in c.flags)
        notes.append(f"{n_ep} points ran expert parallel over the TP group; simulated as TP "
                     f"(EP is not modelled)")
    return cases, skipped, notes


def _reason_counts(skipped: Iterable[Skipped]) -> str:
    counts: dict[str, int] = {}
    for s in skipped:
        key = re.split(r"\s\w+=|:", s.reason, maxsplit=1)[0].strip()
        counts[key] = counts.get(key, 0) + 1
    return "; ".join(f"{n} × {k}" for k, n in sorted(counts.items()))


def steady_prediction(case: Case, cycle_s: float) -> dict[str, float]:
    """The desynchronised steady state of a closed-loop point: its clients started evenly over
    one request cycle (``ramp_up_s`` = ``cycle_s``, the lock-step wave's TTFT + (OSL − 1) × TPOT)
    instead of together, so their prefills are spread over the cycle rather than queued behind
    each other (module docstring). Returns ``ttft_steady`` and ``tpot_steady`` (ms) of wave 3 of
    :data:`RAMP_WAVES`."""
    from simulator.metrics import names
    from simulator.run import simulate

    c = int(case.info["concurrency"])
    wl = case.scenario.workload
    if not isinstance(wl.arrival, ClosedLoopArrivals) or not cycle_s > 0:
        return {}
    arrival = wl.arrival.model_copy(update={"ramp_up_s": cycle_s})
    sc = case.scenario.model_copy(update={"workload": wl.model_copy(
        update={"arrival": arrival, "num_requests": RAMP_WAVES * c})})
    req = simulate(sc, summaries=False).requests
    if (req["outcome"] != names.COMPLETED).any():
        raise ConfigError(f"{case.point_id}: not every ramped request completed")
    ids = req["request_id"].to_numpy()
    wave = req[(ids >= 2 * c) & (ids < 3 * c)]
    return {"ttft_steady": _mean(wave["ttft_s"]) * 1000,
            "tpot_steady": _mean(wave["tpot_s"]) * 1000}


def ttft_bracket(p: PointResult) -> str:
    """Where a closed-loop point's measured mean TTFT lies against its [desynchronised, lock-step]
    predictions: ``inside``, ``below`` (faster than even desynchronised clients: the step model
    is slow there), ``above`` (slower than lock-step) or ``""`` (no bracket)."""
    meas = p.measured.get("ttft_mean", float("nan"))
    lo = p.predicted.get("ttft_mean", float("nan"))
    hi = p.predicted.get("ttft_mean_lockstep", float("nan"))
    if not all(math.isfinite(v) for v in (meas, lo, hi)):
        return ""
    lo, hi = min(lo, hi), max(lo, hi)
    return "below" if meas < lo else "above" if meas > hi else "inside"


def summarize_ttft_bracket(points: Sequence[PointResult]) -> pd.DataFrame:
    """Per suite and GPU, over the summarised closed-loop points: how many measured mean TTFTs
    lie inside, below and above their [desynchronised, lock-step] bracket, and the median signed
    error of each end (``ramped_bias``: the desynchronised one, the compared prediction)."""
    rows: list[dict[str, Any]] = []
    keyed: dict[tuple[str, str], list[PointResult]] = {}
    for p in points:
        if not p.excluded and ttft_bracket(p):
            keyed.setdefault((p.suite, p.gpu), []).append(p)
    order = {s: i for i, s in enumerate(SUITES)}
    for (suite, gpu), pts in sorted(keyed.items(), key=lambda kv: (order.get(kv[0][0], 99),
                                                                    kv[0][1])):
        where = [ttft_bracket(p) for p in pts]
        rows.append({
            "suite": suite, "gpu": gpu, "n": len(pts),
            "inside": where.count("inside"), "below": where.count("below"),
            "above": where.count("above"),
            "ramped_bias": float(np.median([p.error_pct["ttft_mean"] for p in pts])),
            "lockstep_bias": float(np.median([pct_error(p.predicted["ttft_mean_lockstep"],
                                                        p.measured["ttft_mean"]) for p in pts])),
        })
    cols = ["suite", "gpu", "n", "inside", "below", "above", "ramped_bias", "lockstep_bias"]
    return pd.DataFrame(rows, columns=cols)


KNOWN_GAPS: tuple[str, ...] = (
    "Closed-loop drift: the simulated clients are deterministic, so fixed-length requests that "
    "finish in the same step come back together and short prompts prefill together wave after "
    "wave; the API server's serial tokenisation (simulator/cluster/frontend.py) splits a wave once, "
    "into a pattern that then repeats. Real benchmark clients drift apart: after one simulated "
    "burst wave in ten is taken out, the H100 Llama-3.1-70B FP8 TP8 1024/1024 rows leave the same "
    "~55 ms steady-state TTFT at c16, c32 and c64 — a single prefill's, i.e. fully "
    "desynchronised. The compared prediction therefore takes its steady waves from clients spread "
    "over the request cycle (no parameter: the fully mixed end); the lock-step reading is the "
    "column 'TTFT lock-step'. Rows whose clients drifted only part of the way lie between the two "
    "and are under-predicted (Qwen3-32B, MiniMax-M2.5, Qwen3-235B). What spreads real clients "
    "(client turnaround, HTTP, GC pauses) is not measured in the data; the measurement that would "
    "settle it is the per-request send times of a closed-loop aiperf run (its "
    "profile_export.jsonl).",
    "Silicon protocol: rows are replayed as aiconfigurator's aiperf runner measured them (a drained "
    "warm-up, then a burst of c and 10 × c requests, all counted); the generator's later script "
    "sends 20 × c, and the row does not record which ran. The aic-auto-gap-analysis rows cannot "
    "have counted the burst and are compared steady-state (validate_silicon module docstring). "
    "Engine flags are not recorded either: vLLM's defaults are assumed; aiconfigurator's generated "
    "deployments set --max-num-batched-tokens to max_batch_size + ISL + 1500, which staggers "
    "short-prompt waves and lowers their simulated TTFT.",
    "Expert parallelism and attention data parallelism are not modelled (EP over the TP group is "
    "simulated as TP; dp > 1 points are skipped).",
    "Throughput of the silicon points is derived (Little's law on the closed loop) from TTFT and "
    "TPOT, for measured and predicted alike; its error is not independent of theirs.",
)
"""Caveats of the silicon comparison, printed in fidelity.md (:data:`validate_report.KNOWN_GAPS`)."""


def reduce_closed_loop(case: Case, req: pd.DataFrame) -> dict[str, float]:
    """A silicon point's predicted means from its burst run's requests (``req``, sorted by id) and
    its desynchronised steady state (:func:`steady_prediction`), reduced as the benchmark reduced
    its own (``info["protocol"]``): the burst counted once in ``K`` waves (``aiperf``) or left out
    (``steady``); Little's-law throughput; the lock-step reading beside it."""
    c = int(case.info["concurrency"])
    osl = int(case.info["osl"])
    ids = req["request_id"].to_numpy()
    w1, w2 = req[ids < c], req[(ids >= c) & (ids < 2 * c)]
    lock_ttft, lock_tpot = _mean(w2["ttft_s"]) * 1000, _mean(w2["tpot_s"]) * 1000
    steady = steady_prediction(case, (lock_ttft + (osl - 1) * lock_tpot) / 1000.0)
    ttft_s = steady.get("ttft_steady", lock_ttft)
    tpot_s = steady.get("tpot_steady", lock_tpot)
    if case.info.get("protocol") == "steady":
        ttft, tpot, lock = ttft_s, tpot_s, lock_ttft
    else:
        b_ttft, b_tpot = _mean(w1["ttft_s"]) * 1000, _mean(w1["tpot_s"]) * 1000
        ttft, tpot = burst_mean(b_ttft, ttft_s), burst_mean(b_tpot, tpot_s)
        lock = burst_mean(b_ttft, lock_ttft)
    return {"ttft_mean": ttft, "tpot_mean": tpot, "ttft_mean_lockstep": lock,
            "throughput": closed_loop_throughput(c, osl, ttft, tpot),
            # A closed loop keeps its clients running: c sequences over the replica's GPUs.
            "running_per_gpu": c / max(case.scenario.fleet.tp, 1)}
