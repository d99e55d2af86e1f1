"""Cross-check: the ``roofline`` and ``aiconfigurator`` step-time backends on measured vLLM points.

What this measures: the silicon validation points of ``servesim validate`` (aiconfigurator's
measured end-to-end vLLM runs on H100/H200, simulated exactly as the validation simulates them:
:func:`simulator.calibrate.validate.build_silicon` and :func:`~simulator.calibrate.validate.run_case`)
run three times — with the calibrated roofline, with the aiconfigurator kernel database (the
backend's default: kernel times only) and with the kernel times plus the calibration's CPU-side
overhead (``aiconfigurator_cpu_overhead: true``) — and the error of each against the measurement.
Leaves out the dstack and ROCm suites (MI300X is not an aiconfigurator system; dstack's vLLM 0.6.3
V0 runs are a scheduler gap, not a step-time one).

Needs the optional package (``pip install "servesim[aiconfigurator]"``). Run from the repo root::

    python benchmarks/aiconfigurator_crosscheck.py            # fast subset (17 points)
    python benchmarks/aiconfigurator_crosscheck.py --all      # every silicon point

It prints a table and writes ``benchmarks/aiconfigurator_crosscheck.md``. It measures the checkout it
lives in (the repository root goes first on ``sys.path``).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

# NOTE: measure the checkout this file lives in (repository root first on sys.path), as
# benchmarks/speed.py does, not whatever copy of servesim the interpreter has installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulator.calibrate.validate import (
    Case,
    PointResult,
    Skipped,
    build_silicon,
    run_case,
)
from simulator.config import StepTimeConfig

BACKENDS: dict[str, StepTimeConfig] = {
    "roofline": StepTimeConfig(),
    "aic": StepTimeConfig(backend="aiconfigurator"),
    "aic+cpu": StepTimeConfig(backend="aiconfigurator", aiconfigurator_cpu_overhead=True),
}
"""Column name → step-time config the case is re-run with."""
METRICS = ("ttft_mean", "tpot_mean", "throughput")
OUT = Path(__file__).with_suffix(".md")


def with_backend(case: Case, st: StepTimeConfig) -> Case:
    return dataclasses.replace(case, scenario=case.scenario.model_copy(update={"step_time": st}))


def run_one(job: tuple[str, Case]) -> tuple[str, str, PointResult | Skipped]:
    name, case = job
    return name, case.point_id, run_case(with_backend(case, BACKENDS[name]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--all", action="store_true", help="every silicon point, not the fast subset")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT, help=f"markdown written (default {OUT.name})")
    args = ap.parse_args(argv)
    cases: list[Case] = []
    for suite in ("silicon-dense", "silicon-moe"):
        built, _, _ = build_silicon(suite)
        cases += [x for x in built if (args.all or x.fast) and not x.excluded]
    jobs = [(b, c) for c in sorted(cases, key=lambda c: -c.cost) for b in BACKENDS]
    t0 = time.perf_counter()
    res: dict[tuple[str, str], PointResult | Skipped] = {}
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for name, pid, r in pool.map(run_one, jobs):
            res[(name, pid)] = r
            print(f"  {name:12s} {pid}: "
                  + (f"skipped ({r.reason})" if isinstance(r, Skipped) else
                     " ".join(f"{m} {r.error_pct[m]:+.1f}%" for m in METRICS)),
                  file=sys.stderr)
    wall = time.perf_counter() - t0

    lines = [
        "# Cross-check: roofline vs aiconfigurator step-time backends",
        "",
        "Silicon validation points (aiconfigurator's measured vLLM runs, aggregated mode, "
        "H100/H200), simulated as `servesim validate` simulates them, once per step-time backend. "
        "Error % = (predicted − measured) / measured × 100. `aic` = "
        "`step_time.backend: aiconfigurator` (measured kernel times only, the default); "
        "`aic+cpu` = the same with `aiconfigurator_cpu_overhead: true` (plus the servesim "
        "calibration's CPU-side overhead per step, sequence and token). Points left out of the "
        "validation summary (kv-queue) are left out here too. TTFT errors are dominated by the "
        "closed-loop lock-step gap listed in benchmarks/fidelity.md (known gaps), whatever the "
        "step-time backend.",
        "",
        f"Command: `python benchmarks/aiconfigurator_crosscheck.py{' --all' if args.all else ''}` "
        f"({'all points' if args.all else 'fast subset'}; {len(cases)} points; "
        f"wall {wall:.0f} s with {args.jobs} jobs on a shared 2-core machine).",
        "",
        "## Summary: median |error| % (median signed error %)",
        "",
        "| suite | gpu | metric | n | " + " | ".join(BACKENDS) + " |",
        "|---|---|---|---|" + "---|" * len(BACKENDS),
    ]
    groups: list[tuple[str, str, list[str]]] = [
        (suite, gpu, [c.point_id for c in cases if c.suite == suite and c.gpu == gpu])
        for suite in ("silicon-dense", "silicon-moe") for gpu in ("H100-SXM", "H200-SXM")]
    groups.append(("all", "all", [c.point_id for c in cases]))
    for suite, gpu, pids in groups:
        for m in METRICS:
            cells = []
            n = 0
            for b in BACKENDS:
                errs = [r.error_pct[m] for p in pids
                        if isinstance(r := res[(b, p)], PointResult)]
                n = max(n, len(errs))
                cells.append(f"{statistics.median(abs(e) for e in errs):.1f} "
                             f"({statistics.median(errs):+.1f})" if errs else "—")
            if n:
                lines.append(f"| {suite} | {gpu} | {m} | {n} | " + " | ".join(cells) + " |")
    lines += ["", "## Per point: error % (TTFT mean / TPOT mean)", "",
              "| suite | gpu | point | " + " | ".join(BACKENDS) + " |",
              "|---|---|---|" + "---|" * len(BACKENDS)]
    skipped: list[str] = []
    for c in cases:
        cells = []
        for b in BACKENDS:
            r = res[(b, c.point_id)]
            if isinstance(r, Skipped):
                cells.append("refused")
                skipped.append(f"- {b} {c.gpu} {c.label}: {r.reason}")
            else:
                cells.append(f"{r.error_pct['ttft_mean']:+.0f} / {r.error_pct['tpot_mean']:+.0f}")
        lines.append(f"| {c.suite} | {c.gpu} | {c.label} | " + " | ".join(cells) + " |")
    if skipped:
        lines += ["", "## Refused", "", *skipped]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
