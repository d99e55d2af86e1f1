"""Validation: simulate every measured setup *as it was measured* and publish the error.

What this models: the question a planner asks before trusting a number — "if I had simulated the
benchmark that produced this measurement, how far off would servesim have been?". Each measured
point becomes a :class:`~simulator.config.Scenario` built in code (same model, precision, GPU, TP,
engine flags, client and request lengths as the measurement) and goes through the ordinary
:func:`simulator.run.simulate`; its summary is reduced the way the benchmark reduced its own
requests, and compared with the measured value: error % = (predicted − measured) / measured × 100.

Suites (none of them is used by the step-time fit, ``simulator.calibrate.fit``), each built in a
module of its own whose docstring says what measured data it reads and how it is simulated:

``silicon-dense`` / ``silicon-moe``
    aiconfigurator's measured vLLM points, H100 and H200, closed-loop clients
    (:mod:`simulator.calibrate.validate_silicon`).

``dstack-405b``
    dstack's Llama-3.1-405B-FP8 TP8 serving runs on 8×H100 and 8×MI300X, replayed request by
    request (:mod:`simulator.calibrate.validate_dstack`).

``rocm-mi300x``
    ROCm's vLLM dev-docker fixed-batch latency on 8×MI300X, the versions the fit did not use
    (:mod:`simulator.calibrate.validate_rocm`).

``rocm-throughput`` / ``mlperf``
    The production-load suites — offline and Poisson serving with hundreds of running sequences
    per GPU: ROCm's MI300X offline throughput rows of the held-out versions, and MLPerf Inference
    v5.0 (Krai, vLLM) Llama-2-70B FP8 Offline and Server on 8×H200 and 8×MI300X. Built in
    :mod:`simulator.calibrate.validate_load` (its docstring says how and what is assumed).

What they share (cases, results, error arithmetic, the gate block) is in
:mod:`simulator.calibrate.validate_base`; the markdown and terminal rendering in
:mod:`simulator.calibrate.validate_report`. This module keeps the suite registry
(:data:`BUILDERS`), running a case (:func:`predict_case`, :func:`run_cases`), the whole validation
(:func:`validate`) and the ``servesim validate`` command.

Every point records the load it ran at (simulated running sequences per GPU) and the report
splits each suite's errors by load regime (≤ 32, 33–128, 129–512, > 512 running sequences per
GPU: :func:`validate_base.summarize_errors` with ``by_regime``).

Each suite has a ``fast`` subset — a few representative points per GPU, simulated exactly as in
the full suite — used by ``servesim validate --fast`` and by the regression gate
(``tests/calibrate/test_validate.py``), which compares the fast-subset medians with the JSON block
embedded in ``benchmarks/fidelity.md``.

Leaves out: run-to-run noise of the measurements (one seed per point), CUDA-graph padding, EP
all-to-all, attention data parallelism, speculative decoding, and V0 behaviour beyond what
:mod:`~simulator.calibrate.validate_dstack` describes.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Annotated

import typer

from simulator.calibrate import datasets as ds
from simulator.calibrate import validate_dstack as vd
from simulator.calibrate import validate_load as vl
from simulator.calibrate import validate_rocm as vr
from simulator.calibrate import validate_silicon as vs
from simulator.calibrate.validate_base import (
    GATE_BEGIN,
    GATE_END,
    GATE_TOLERANCE_POINTS,
    METRIC_LABELS,
    METRIC_UNITS,
    SUITES,
    TARGETS,
    Case,
    PointResult,
    Report,
    Skipped,
    gate_block,
    gate_regressions,
    parse_gate_block,
    pct_error,
    point_regime,
    summarize_errors,
)
from simulator.calibrate.validate_dstack import (
    DSTACK_ENGINE,
    FAST_DSTACK_QPS,
    build_dstack,
    dstack_calibration,
    dstack_measured,
    dstack_scenario,
    replayed_requests,
)
from simulator.calibrate.validate_report import KNOWN_GAPS, print_report, render_markdown
from simulator.calibrate.validate_rocm import (
    FAST_ROCM_BATCHES,
    ROCM_FALLBACK_HELD_OUT,
    build_rocm,
    rocm_scenario,
    rocm_version_split,
)
from simulator.calibrate.validate_silicon import (
    AIPERF_REQUESTS_PER_CLIENT,
    FAMILY_BY_VERSION,
    FAST_SILICON,
    KV_QUEUE_TTFT_S,
    RAMP_WAVES,
    SILICON_GPUS,
    SILICON_MODELS,
    build_silicon,
    burst_mean,
    burst_waves,
    closed_loop_throughput,
    kernel_families,
    silicon_calibration,
    silicon_layout,
    silicon_protocol,
    silicon_scenario,
    steady_prediction,
    summarize_ttft_bracket,
    ttft_bracket,
)
from simulator.errors import ConfigError

__all__ = [
    "AIPERF_REQUESTS_PER_CLIENT",
    "BUILDERS",
    "DSTACK_ENGINE",
    "FAMILY_BY_VERSION",
    "FAST_DSTACK_QPS",
    "FAST_ROCM_BATCHES",
    "FAST_SILICON",
    "GATE_BEGIN",
    "GATE_END",
    "GATE_TOLERANCE_POINTS",
    "KNOWN_GAPS",
    "KV_QUEUE_TTFT_S",
    "METRIC_LABELS",
    "METRIC_UNITS",
    "RAMP_WAVES",
    "ROCM_FALLBACK_HELD_OUT",
    "SILICON_GPUS",
    "SILICON_MODELS",
    "SUITES",
    "TARGETS",
    "Case",
    "PointResult",
    "Report",
    "Skipped",
    "build_dstack",
    "build_rocm",
    "build_silicon",
    "burst_mean",
    "burst_waves",
    "calibration_files",
    "closed_loop_throughput",
    "data_sources",
    "dstack_calibration",
    "dstack_measured",
    "dstack_scenario",
    "gate_block",
    "gate_regressions",
    "kernel_families",
    "parse_gate_block",
    "pct_error",
    "point_regime",
    "predict_case",
    "print_report",
    "render_markdown",
    "replayed_requests",
    "rocm_scenario",
    "rocm_version_split",
    "run_case",
    "run_cases",
    "silicon_calibration",
    "silicon_layout",
    "silicon_protocol",
    "silicon_scenario",
    "steady_prediction",
    "summarize_errors",
    "summarize_ttft_bracket",
    "ttft_bracket",
    "validate",
    "validate_command",
]
"""The names tests, benchmarks and other modules take from here; most are defined in the suite
modules (a value read by those modules, such as ``FAMILY_BY_VERSION``, is changed there)."""

BUILDERS: dict[str, Callable[[], tuple[list[Case], list[Skipped], list[str]]]] = {
    "silicon-dense": lambda: build_silicon("silicon-dense"),
    "silicon-moe": lambda: build_silicon("silicon-moe"),
    "dstack-405b": build_dstack,
    "rocm-mi300x": build_rocm,
    "rocm-throughput": lambda: vl.build_rocm_throughput(Case, rocm_version_split),
    "mlperf": lambda: vl.build_mlperf(Case),
}


def predict_case(case: Case) -> tuple[dict[str, float], str]:
    """Simulate a case and reduce its requests as the benchmark did: (predicted, calibration)."""
    from simulator.metrics import names
    from simulator.run import simulate

    if case.kind == "replay":
        with vd.replayed_requests(case.replay):
            res = simulate(case.scenario, summaries=False)
    else:
        res = simulate(case.scenario, summaries=False)
    req = res.requests.sort_values("request_id")
    if (req["outcome"] != names.COMPLETED).any():
        bad = req.loc[req["outcome"] != names.COMPLETED, "outcome"].value_counts().to_dict()
        raise ConfigError(f"{case.point_id}: not every request completed ({bad})")
    cal = str(res.deployment.calibration_source).split(" (")[0]
    load = {"running_per_gpu": vl.running_per_gpu(res.timeseries, case.scenario.fleet.tp)}
    if case.kind == "throughput":
        return vl.reduce_throughput(case, res) | load, cal
    if case.kind == "closed_loop":
        return vs.reduce_closed_loop(case, req), cal
    if case.kind == "replay":
        return vd.reduce_replay(case, res, req) | load, cal
    return vr.reduce_batch(case, req), cal


def run_case(case: Case) -> PointResult | Skipped:
    """Simulate one case; a scenario the simulator refuses (ConfigError) becomes a Skipped."""
    t0 = time.perf_counter()
    try:
        predicted, cal = predict_case(case)
    except ConfigError as e:
        return Skipped(case.suite, case.gpu, case.point_id, f"simulator refused: {e}")
    errors = {m: pct_error(predicted.get(m, float("nan")), v) for m, v in case.measured.items()}
    return PointResult(case.suite, case.gpu, case.point_id, case.label, case.fast,
                       list(case.flags), case.excluded, dict(case.info), dict(case.measured),
                       predicted, errors, cal, time.perf_counter() - t0)


def run_cases(cases: Sequence[Case], jobs: int | None = None,
              progress: Callable[[int, int], None] | None = None) -> list[PointResult | Skipped]:
    """Run cases, in parallel processes when ``jobs`` > 1 (default: all CPUs); results in order."""
    n = len(cases)
    jobs = max(1, min(jobs or os.cpu_count() or 1, n or 1))
    results: list[PointResult | Skipped | None] = [None] * n
    if jobs == 1:
        for i, c in enumerate(cases):
            results[i] = run_case(c)
            if progress:
                progress(i + 1, n)
    else:
        order = sorted(range(n), key=lambda i: -cases[i].cost)
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = {i: pool.submit(run_case, cases[i]) for i in order}
            for done, i in enumerate(order, start=1):
                results[i] = futures[i].result()
                if progress:
                    progress(done, n)
    return [r for r in results if r is not None]


def data_sources() -> dict[str, str]:
    """Data folder → first line of its SOURCE.txt (repository @ commit)."""
    root = ds.shared_data_root()
    out = {}
    for rel in ("calibration/aiconfigurator", "benchmarks/dstack",
                "calibration/rocm-vllm-devdocker", "benchmarks/mlperf"):
        f = root / rel / "SOURCE.txt"
        out[rel] = f.read_text().splitlines()[0].strip() if f.is_file() else "(absent)"
    return out


def calibration_files() -> list[str]:
    """Calibration files present (name: method, date), or the prior."""
    from simulator.profiles import list_calibrations

    try:
        cals = list_calibrations()
    except ConfigError as e:
        return [f"unreadable calibration file: {e}"]
    if not cals:
        return ["none: every GPU runs on the prior (uncalibrated defaults)"]
    return [f"{c.gpu}__vllm-{c.vllm_family} ({c.provenance.date}): {_first_sentence(c.provenance.method)}"
            for c in cals]


def _first_sentence(text: str, limit: int = 160) -> str:
    """The first sentence of a provenance text, cut at ``limit`` characters."""
    first = re.split(r"(?<=\.)\s", text.strip(), maxsplit=1)[0]
    return first if len(first) <= limit else first[: limit - 1].rstrip() + "…"


def validate(suites: Sequence[str] | None = None, fast: bool = False, jobs: int | None = None,
             progress: Callable[[int, int], None] | None = None) -> Report:
    """Build the suites' cases, simulate them and summarise the errors."""
    t0 = time.perf_counter()
    chosen = list(suites) if suites else list(SUITES)
    unknown = [s for s in chosen if s not in BUILDERS]
    if unknown:
        raise ConfigError(f"unknown suite(s) {', '.join(unknown)}; choose from "
                          f"{', '.join(SUITES)}")
    cases: list[Case] = []
    skipped: list[Skipped] = []
    notes: dict[str, list[str]] = {}
    for s in chosen:
        c, sk, nt = BUILDERS[s]()
        if fast:
            c = [x for x in c if x.fast]
            # NOTE: the suite's own notes count every point it has; only the subset is simulated.
            nt = [n.replace(" points simulated", " points in the suite") for n in nt]
            nt = [*nt, f"fast subset: {len(c)} points simulated"]
        cases += c
        skipped += sk
        notes[s] = nt
    points: list[PointResult] = []
    for r in run_cases(cases, jobs, progress):
        if isinstance(r, Skipped):
            skipped.append(r)
        else:
            points.append(r)
    summary = summarize_errors(points)
    fast_summary = summarize_errors([p for p in points if p.fast])
    return Report(chosen, fast, points, skipped, summary, fast_summary, notes,
                  time.perf_counter() - t0, data_sources(), calibration_files(),
                  summarize_ttft_bracket(points), summarize_errors(points, by_regime=True))


def validate_command(
    suite: Annotated[list[str] | None, typer.Option(
        "--suite", help=f"Suite(s) to run (repeatable): {', '.join(SUITES)}. Default: all.")
    ] = None,
    fast: Annotated[bool, typer.Option(
        help="Only the fast subset (a few representative points per GPU).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    write: Annotated[Path | None, typer.Option(
        "--write", help="Write the markdown report here (e.g. benchmarks/fidelity.md).")] = None,
    jobs: Annotated[int | None, typer.Option(
        "--jobs", help="Parallel simulation processes (default: all CPUs).")] = None,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="No progress bar (it is drawn on stderr, on a terminal only).")
    ] = False,
) -> None:
    """Simulate measured vLLM setups and print the error table (median / p90 of |error| %)."""
    from simulator.report.progress import counter, wanted

    try:
        with counter("validate", wanted(quiet)) as tick:
            report = validate(suite, fast=fast, jobs=jobs, progress=tick)
    except ds.DataMissing as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    except ConfigError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    if write is not None:
        parts = ["servesim validate"]
        parts += [f"--suite {s}" for s in (suite or [])]
        if fast:
            parts.append("--fast")
        parts.append(f"--write {write}")
        write.parent.mkdir(parents=True, exist_ok=True)
        write.write_text(render_markdown(report, " ".join(parts)))
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2, default=str))
    else:
        print_report(report)
        if write is not None:
            typer.echo(f"wrote {write}")
