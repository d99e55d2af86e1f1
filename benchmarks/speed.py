"""Speed benchmark of the simulator (issue 8): wall time, CPU time, simulated requests per
wall-second, SimPy events, engine steps and peak RSS for three cases, each run in a fresh subprocess
(median of ``--repeat``). CPU time (``time.process_time``) is the steadier figure on a shared machine.

- S1: one Llama-3.1-8B replica on an H100-SXM, ShareGPT-like lengths (the default scenario's),
  Poisson arrivals near 70% of the replica's capacity, 10,000 requests;
- S2: eight such replicas behind least-outstanding routing at the same per-replica load,
  100,000 requests (also run at 25,000 and 50,000 to measure how cost grows with requests);
- S3: a fleet-day — 1,000,000 requests over 24 simulated hours with a diurnal profile (mean
  11.6 req/s, peak 17.4 req/s at 14:00) and autoscaling on (1 to 4 replicas).

Usage (from the repository root)::

    python benchmarks/speed.py --case all --repeat 3 --write benchmarks/RESULTS.md
    python benchmarks/speed.py --case S2 --repeat 1 --no-fast-path   # the step-by-step loop
    python benchmarks/speed.py --case S2 --repeat 1 --pure           # the uncompiled engine

The benchmark measures the checkout it lives in (the repository root goes first on ``sys.path``),
with the engine compiled if ``pip install .`` compiled it there (``simulator/_native.py``; each
row's ``engine`` says which ran).
Per-step rows and per-token ITL rows are not kept (``metrics.record_steps`` / ``record_itl``
false), as a planner sweeping many what-ifs would run; the per-request frame is complete.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

CAPACITY_RPS = 62.0
"""Saturation throughput of one Llama-3.1-8B bf16 replica on an H100-SXM with these lengths under
the H100-SXM__vllm-0.24 calibration (offline run of 3,000 requests: 62.0 req/s; it was 30.1 req/s
under the previous calibration, with its pre-V1 per-sequence overhead); 70% load = 43.4 req/s per
replica. Re-measure it when the calibration changes."""
LOAD = 0.7
LENGTHS: dict[str, Any] = {
    "input_len": {"kind": "lognormal", "mean": 215, "cv": 1.13, "min": 4, "max": 1024},
    "output_len": {"kind": "lognormal", "mean": 197, "cv": 0.88, "min": 1, "max": 1024},
}
QUIET = {"record_steps": False, "record_itl": False, "sample_interval_s": 10.0}


def scenario(case: str, n: int | None = None) -> dict[str, Any]:
    """The scenario of a case (``n`` overrides its number of requests)."""
    base: dict[str, Any] = {
        "name": f"speed-{case}", "seed": 0,
        "model": {"name": "Llama-3.1-8B", "weight_dtype": "bf16"},
        "engine": {"max_num_seqs": 256, "max_num_batched_tokens": 8192, "max_model_len": 8192},
        "metrics": dict(QUIET),
    }
    if case == "S1":
        base["fleet"] = {"gpu": "H100-SXM", "tp": 1, "replicas": 1,
                         "router": {"kind": "least_outstanding"}}
        base["workload"] = {"arrival": {"kind": "poisson", "rate": LOAD * CAPACITY_RPS},
                            **LENGTHS, "num_requests": n or 10_000}
    elif case == "S2":
        base["fleet"] = {"gpu": "H100-SXM", "tp": 1, "replicas": 8,
                         "router": {"kind": "least_outstanding"}}
        base["workload"] = {"arrival": {"kind": "poisson", "rate": 8 * LOAD * CAPACITY_RPS},
                            **LENGTHS, "num_requests": n or 100_000}
    elif case == "S3":
        # 1,000,000 requests a day: mean 11.6 req/s, peak 17.4 req/s (amplitude 0.5 at 14:00).
        n = n or 1_000_000
        base["fleet"] = {"gpu": "H100-SXM", "tp": 1, "replicas": 1,
                         "router": {"kind": "least_outstanding"}}
        # An HPA on waiting requests (target 4 per replica), 1 to 4 replicas, default cold start
        # (simulator.cluster.autoscaler / provisioning); the Prometheus scrape every 15 s.
        base["autoscaling"] = {"pools": {"default": {
            "min_replicas": 1, "max_replicas": 4,
            "signals": [{"kind": "pods", "metric": "num_requests_waiting", "target": 4}]}}}
        base["workload"] = {"arrival": {"kind": "diurnal", "rate": n / 86_400.0,
                                        "amplitude": 0.5, "peak_hour": 14.0},
                            **LENGTHS, "num_requests": n}
        base["metrics"] = {**QUIET, "sample_interval_s": 60.0, "max_sim_time_s": 2 * 86_400.0}
    else:
        raise SystemExit(f"unknown case {case!r}; use S1, S2 or S3")
    return base


FRAMES = ("requests", "attempts", "steps", "timeseries")
"""The frames ``--dump`` writes (``benchmarks/ab.py --check-frames`` compares them)."""


def checkout(root: Path, flag: str = "--root") -> Path:
    """``root`` resolved, or a one-line error when it is not the root of a simulator checkout
    (its ``simulator`` package would otherwise be imported from wherever else it is installed)."""
    root = root.resolve()
    if not (root / "simulator" / "__init__.py").is_file():
        raise SystemExit(f"error: {flag} {root}: no simulator/ package there; give the root of a "
                         "servesim checkout (e.g. git worktree add ../base <commit>)")
    return root


def child(case: str, n: int | None, fast: bool, root: Path, dump: str | None = None) -> None:
    """Run one case in this (fresh) process and print its figures as JSON; ``dump``: keep step
    rows and write the :data:`FRAMES` to ``{dump}.{frame}.parquet``."""
    sys.path.insert(0, str(root))
    import resource

    import simpy

    from simulator.config import MetricsConfig, Scenario, scenario_from_dict
    from simulator.run import simulate

    envs: list[simpy.Environment] = []
    init = simpy.Environment.__init__

    def counting_init(self: simpy.Environment, *a: Any, **k: Any) -> None:
        # NOTE: for a checkout from before simulator.simenv (--root, the baseline), which runs on
        # SimPy's Environment: only remembers it (no per-event cost); SimPy numbers every event it
        # schedules, so its counter after the run is the number of events processed or pending.
        init(self, *a, **k)
        envs.append(self)

    simpy.Environment.__init__ = counting_init  # type: ignore[method-assign]
    data = scenario(case, n)
    data["sim"] = {"fast_path": fast}
    # A checkout from before issue 8 (--root, for the baseline) has neither knob.
    if "sim" not in Scenario.model_fields:
        del data["sim"]
    if "record_itl" not in MetricsConfig.model_fields:
        del data["metrics"]["record_itl"]
    if dump:
        data["metrics"]["record_steps"] = True
    sc = scenario_from_dict(data)
    t0 = time.perf_counter()
    c0 = time.process_time()
    res = simulate(sc)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    req = res.summary["requests"]
    events = res.summary["sim"].get("events")  # simulator.simenv's count of scheduled events
    if events is None:
        events = next(envs[-1]._eid) if envs else -1  # type: ignore[attr-defined]
    if dump:
        frames = (res.requests, res.extra["attempts"], res.steps, res.timeseries)
        for name, df in zip(FRAMES, frames, strict=True):
            df.to_parquet(f"{dump}.{name}.parquet")
    print(json.dumps({
        "case": case, "requests": int(req["arrived"]), "completed": int(req["completed"]),
        "wall_s": wall, "cpu_s": cpu, "req_per_wall_s": req["arrived"] / wall, "events": events,
        "steps": res.summary["sim"]["steps"], "sim_time_s": res.summary["sim"]["sim_time_s"],
        "ahead_steps": res.summary["sim"].get("run_ahead_steps", 0),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "ttft_p50_ms": res.summary["ttft_ms"]["p50"], "tpot_p50_ms": res.summary["tpot_ms"]["p50"],
        "engine": res.summary["sim"].get("native", "pure Python (a checkout without simulator._native)"),
    }))


def measure(case: str, n: int | None, fast: bool, repeat: int,
            root: Path = ROOT) -> dict[str, Any]:
    """Median over ``repeat`` fresh subprocesses."""
    runs = [run_child(case, n, fast, root) for _ in range(repeat)]
    med: dict[str, Any] = dict(runs[0])
    for key in ("wall_s", "cpu_s", "req_per_wall_s", "peak_rss_mb"):
        med[key] = statistics.median(r[key] for r in runs)
    med["walls"] = [round(r["wall_s"], 2) for r in runs]
    return med


def run_child(case: str, n: int | None, fast: bool, root: Path,
              dump: str | None = None) -> dict[str, Any]:
    """The figures of one run of ``case`` with checkout ``root`` in a fresh process (see
    :func:`child`); a one-line error naming the checkout when the run fails."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", case,
           "--fast-path" if fast else "--no-fast-path", "--root", str(root)]
    if n is not None:
        cmd += ["--requests", str(n)]
    if dump:
        cmd += ["--dump", dump]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SystemExit(f"error: the run with checkout {root} failed: {last} "
                         "(is it a servesim checkout with its hardware_profiles/?)")
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def slope(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least-squares wall = a + b·n: (b in µs per request, a in seconds)."""
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs)
    return b * 1e6, my - b * mx


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| case | requests | wall s (median) | runs | CPU s | sim req / wall s | events | "
            "engine steps | run ahead | peak RSS MB |\n"
            "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|\n")
    return head + "".join(
        f"| {r['case']} | {r['requests']:,} | {r['wall_s']:.1f} | {r['walls']} | "
        f"{r.get('cpu_s', float('nan')):.1f} | {r['req_per_wall_s']:,.0f} | {r['events']:,} | "
        f"{r['steps']:,} | {r.get('ahead_steps', 0):,} | {r['peak_rss_mb']:.0f} |\n"
        for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default="all", help="S1, S2, S3 or all")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--requests", type=int, default=None, help="override the case's requests")
    ap.add_argument("--fast-path", dest="fast", action="store_true", default=True)
    ap.add_argument("--no-fast-path", dest="fast", action="store_false")
    ap.add_argument("--no-slope", action="store_true", help="skip S2 at 25k and 50k requests")
    ap.add_argument("--write", type=Path, default=None,
                    help="append the figures as a markdown section to this file")
    ap.add_argument("--root", type=Path, default=ROOT,
                    help="simulator checkout to measure (e.g. an export of the commit before "
                         "issue 8, for the baseline)")
    ap.add_argument("--pure", action="store_true",
                    help="run the Python sources even where the engine is compiled "
                         "(SERVESIM_PURE=1; see simulator/_native.py)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--dump", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.root = checkout(a.root)
    if a.pure:
        os.environ["SERVESIM_PURE"] = "1"  # the children inherit it
    if a.child:
        child(a.child, a.requests, a.fast, a.root, a.dump)
        return
    cases = ["S1", "S2", "S3"] if a.case == "all" else [a.case]
    rows = []
    for c in cases:
        r = measure(c, a.requests, a.fast, a.repeat, a.root)
        rows.append(r)
        print(json.dumps(r), flush=True)
    text = (f"{'' if a.root == ROOT else f'checkout {a.root}; '}"
            f"fast path {'on' if a.fast else 'off'}; {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} CPUs, Python {platform.python_version()}; median of {a.repeat}; "
            f"engine: {rows[0]['engine']}\n\n"
            + table(rows))
    if "S2" in cases and a.requests is None and not a.no_slope:
        pts = [(n, measure("S2", n, a.fast, a.repeat, a.root)["wall_s"])
               for n in (25_000, 50_000)]
        pts.append((rows[cases.index("S2")]["requests"], rows[cases.index("S2")]["wall_s"]))
        b, c0 = slope(pts)
        text += (f"\nS2 cost vs requests: wall = {c0:.2f} s + {b:.1f} µs × requests "
                 f"(points {', '.join(f'{n:,}: {w:.1f} s' for n, w in pts)})\n")
    print(text)
    if a.write:
        with a.write.open("a") as f:
            f.write(f"\n### {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} — "
                    f"`python benchmarks/speed.py {' '.join(sys.argv[1:])}`\n\n{text}")


if __name__ == "__main__":
    main()
