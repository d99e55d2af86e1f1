"""Compare two simulator checkouts on one speed case, interleaved (issue 8).

On a shared machine the speed of one core drifts by 10 % or more over minutes, so two figures taken
at different times do not compare. This runs the case alternately with checkout A and checkout B,
each run in a fresh process, and reports the best and the mean CPU seconds of ``simulate`` for
each (CPU time, ``time.process_time``; building the scenario is not timed).

Usage (from the repository root)::

    git worktree add ../base d1ec2e0
    python benchmarks/ab.py --a ../base --b . --case S2 --requests 25000 --rounds 6
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = """
import json, sys, time
root, here, case, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sys.path.insert(0, root)
sys.path.insert(1, here)
import speed
from simulator.config import scenario_from_dict
from simulator.run import simulate
sc = scenario_from_dict(speed.scenario(case, n))
t = time.process_time()
res = simulate(sc)
print(json.dumps({"cpu_s": time.process_time() - t, "steps": res.summary["sim"]["steps"]}))
"""


def run_once(root: Path, case: str, n: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, str(root), str(HERE), case, str(n)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", required=True, help="checkout A (e.g. the baseline)")
    ap.add_argument("--b", default=".", help="checkout B (default: this one)")
    ap.add_argument("--case", default="S2", help="S1, S2 or S3 (benchmarks/speed.py)")
    ap.add_argument("--requests", type=int, default=None, help="override the case's requests")
    ap.add_argument("--rounds", type=int, default=5, help="runs of each checkout, alternating")
    args = ap.parse_args()
    roots = {"A": Path(args.a).resolve(), "B": Path(args.b).resolve()}
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


if __name__ == "__main__":
    main()
