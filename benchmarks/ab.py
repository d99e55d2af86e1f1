"""Compare two simulator checkouts on one speed case, interleaved (issue 8).

On a shared machine the speed of one core drifts by 10 % or more over minutes, so two figures taken
at different times do not compare. This runs the case alternately with checkout A and checkout B,
each run in a fresh process, and reports the best and the mean CPU seconds of ``simulate`` for
each (CPU time, ``time.process_time``; building the scenario is not timed). ``--check-frames``
then runs the case once more with each checkout, step rows kept, and requires the requests,
attempts, steps and gauge frames to be identical, bit for bit (a speed change must not change
results).

Usage (from the repository root)::

    git worktree add ../base d1ec2e0
    python benchmarks/ab.py --a ../base --b . --case S2 --requests 25000 --rounds 6 --check-frames
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = """
import json, sys, time
root, here, case, n, dump = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
sys.path.insert(0, root)
sys.path.insert(1, here)
import speed
from simulator.config import scenario_from_dict
from simulator.run import simulate
import simulator
assert simulator.__file__.startswith(root), f"simulator imported from {simulator.__file__}"
data = speed.scenario(case, n)
if dump:
    data["metrics"]["record_steps"] = True
sc = scenario_from_dict(data)
t = time.process_time()
res = simulate(sc)
cpu = time.process_time() - t
if dump:
    for name, df in (("requests", res.requests), ("attempts", res.extra["attempts"]),
                     ("steps", res.steps), ("timeseries", res.timeseries)):
        df.to_parquet(f"{dump}.{name}.parquet")
print(json.dumps({"cpu_s": cpu, "steps": res.summary["sim"]["steps"]}))
"""
FRAMES = ("requests", "attempts", "steps", "timeseries")


def run_once(root: Path, case: str, n: int, dump: str = "") -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", CHILD, str(root), str(HERE), case, str(n), dump],
                          capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SystemExit(f"error: the run with checkout {root} failed: {last} "
                         "(is it a servesim checkout with its hardware_profiles/?)")
    return json.loads(done.stdout.strip().splitlines()[-1])


def check_frames(roots: dict[str, Path], case: str, n: int) -> list[str]:
    """Run the case once with each checkout (step rows kept); the frames that differ."""
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        for key, root in roots.items():
            run_once(root, case, n, dump=f"{tmp}/{key}")
        differ = []
        for name in FRAMES:
            a = pd.read_parquet(f"{tmp}/A.{name}.parquet")
            b = pd.read_parquet(f"{tmp}/B.{name}.parquet")
            try:
                pd.testing.assert_frame_equal(a, b, check_exact=True)
            except AssertionError:
                differ.append(name)
        return differ


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", required=True, help="checkout A (e.g. the baseline)")
    ap.add_argument("--b", default=".", help="checkout B (default: this one)")
    ap.add_argument("--case", default="S2", help="S1, S2 or S3 (benchmarks/speed.py)")
    ap.add_argument("--requests", type=int, default=None, help="override the case's requests")
    ap.add_argument("--rounds", type=int, default=5, help="runs of each checkout, alternating")
    ap.add_argument("--check-frames", action="store_true",
                    help="then require bit-identical frames from the two checkouts")
    args = ap.parse_args()
    roots = {"A": Path(args.a).resolve(), "B": Path(args.b).resolve()}
    for flag, root in zip(("--a", "--b"), roots.values(), strict=True):
        if not (root / "simulator" / "__init__.py").is_file():
            raise SystemExit(f"error: {flag} {root}: no simulator/ package there; give the root "
                             "of a servesim checkout (e.g. git worktree add ../base <commit>)")
    n = args.requests or 0
    times: dict[str, list[float]] = {"A": [], "B": []}
    steps: dict[str, int] = {}
    for _ in range(args.rounds):
        for key, root in roots.items():
            got = run_once(root, args.case, n)
            times[key].append(got["cpu_s"])
            steps[key] = int(got["steps"])
    best = {k: min(v) for k, v in times.items()}
    print(f"{args.case}, {args.requests or 'default'} requests, {args.rounds} rounds (CPU s)")
    for key in ("A", "B"):
        print(f"  {key} {roots[key]}: best {best[key]:.3f}  mean {statistics.mean(times[key]):.3f}"
              f"  runs {[round(t, 2) for t in times[key]]}  engine steps {steps[key]:,}")
    print(f"  B / A (best): {best['B'] / best['A']:.3f}")
    if steps["A"] != steps["B"]:
        print("  note: the two checkouts simulate different numbers of engine steps")
    if args.check_frames:
        differ = check_frames(roots, args.case, n)
        if differ:
            print(f"  frames differ: {', '.join(differ)}")
            raise SystemExit(1)
        print(f"  frames identical, bit for bit: {', '.join(FRAMES)}")


if __name__ == "__main__":
    main()
