"""Compare two simulator checkouts on one speed case, interleaved (issue 8).

On a shared machine the speed of one core drifts by 10 % or more over minutes, so two figures taken
at different times do not compare. This runs the case alternately with checkout A and checkout B,
each run in a fresh process by ``speed.py``'s runner, and reports the best and the mean CPU
seconds of ``simulate`` for each (``time.process_time``; building the scenario is not timed).
``--check-frames`` then runs the case once more with each checkout, step rows kept, and requires
the requests, attempts, steps and gauge frames to be identical, bit for bit (a speed change must
not change results).

Usage (from the repository root)::

    git worktree add ../base d1ec2e0
    python benchmarks/ab.py --a ../base --b . --case S2 --requests 25000 --rounds 6 --check-frames
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import speed  # benchmarks/speed.py: the cases and the fresh-process runner


def check_frames(roots: dict[str, Path], case: str, n: int | None) -> list[str]:
    """Run the case once with each checkout (step rows kept); the frames that differ."""
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        for key, root in roots.items():
            speed.run_child(case, n, True, root, dump=f"{tmp}/{key}")
        differ = []
        for name in speed.FRAMES:
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
    roots = {"A": speed.checkout(Path(args.a), "--a"), "B": speed.checkout(Path(args.b), "--b")}
    n = args.requests
    times: dict[str, list[float]] = {"A": [], "B": []}
    steps: dict[str, int] = {}
    engine: dict[str, str] = {}
    for _ in range(args.rounds):
        for key, root in roots.items():
            got = speed.run_child(args.case, n, True, root)
            times[key].append(got["cpu_s"])
            steps[key] = int(got["steps"])
            engine[key] = got.get("engine", "pure Python")
    best = {k: min(v) for k, v in times.items()}
    print(f"{args.case}, {args.requests or 'default'} requests, {args.rounds} rounds (CPU s)")
    for key in ("A", "B"):
        print(f"  {key} {roots[key]}: best {best[key]:.3f}  mean {statistics.mean(times[key]):.3f}"
              f"  runs {[round(t, 2) for t in times[key]]}  engine steps {steps[key]:,}"
              f"  ({engine[key]})")
    print(f"  B / A (best): {best['B'] / best['A']:.3f}")
    if steps["A"] != steps["B"]:
        print("  note: the two checkouts simulate different numbers of engine steps")
    if args.check_frames:
        differ = check_frames(roots, args.case, n)
        if differ:
            print(f"  frames differ: {', '.join(differ)}")
            raise SystemExit(1)
        print(f"  frames identical, bit for bit: {', '.join(speed.FRAMES)}")


if __name__ == "__main__":
    main()
