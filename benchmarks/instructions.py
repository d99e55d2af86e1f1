"""Instructions per simulated request (issue 26): the steady figure on a shared, noisy machine.

Wall and CPU seconds on a VM shared with other jobs drift by 10–30 % between runs of the same
commit; the number of instructions a run executes does not. This counts them with Valgrind's
callgrind around one ``simulate()`` of a ``speed.py`` case (after a warm-up run, so imports,
calibration loading and first-call caches are not counted), at two sizes, and reports the
difference per request — the cost that grows with requests — and the fixed part.

Usage (from the repository root; needs ``valgrind``; about a minute per checkout)::

    python benchmarks/instructions.py --root ../base --root . --case S2 --sizes 2000 8000

Each (checkout, size) runs in its own process under callgrind, two at a time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import speed  # benchmarks/speed.py: the cases

CHILD = """
import os, sys, time
root, case, n, flag = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
sys.path.insert(0, root); sys.path.insert(0, os.path.join(root, "benchmarks"))
import speed
from simulator.config import scenario_from_dict
from simulator.run import simulate
sc = scenario_from_dict(speed.scenario(case, n))
simulate(scenario_from_dict(speed.scenario(case, 300)))  # warm-up: not counted
open(flag, "w").write(str(os.getpid()))
while not os.path.exists(flag + ".go"):
    time.sleep(0.05)
simulate(sc)
sys.stdout.flush()
os._exit(0)  # interpreter shutdown is not counted either
"""


def count(root: Path, case: str, n: int) -> int:
    """Instructions of one ``simulate()`` of ``case`` with ``n`` requests, checkout ``root``."""
    with tempfile.TemporaryDirectory() as tmp:
        flag, out = f"{tmp}/ready", f"{tmp}/callgrind.out"
        script = Path(tmp) / "child.py"
        script.write_text(CHILD)
        # NOTE: instrumentation starts off (the imports run at near-native speed) and is switched
        # on by callgrind_control once the child has built its scenario and warmed up.
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no",
             f"--callgrind-out-file={out}", sys.executable, str(script), str(root), case, str(n),
             flag], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not (os.path.exists(flag) and Path(flag).read_text()):
            if proc.poll() is not None:
                raise SystemExit(f"error: the run with checkout {root} failed under valgrind")
            time.sleep(0.1)
        subprocess.run(["callgrind_control", "-i", "on", Path(flag).read_text()],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        Path(flag + ".go").touch()
        proc.wait()
        for line in Path(out).read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise SystemExit("error: callgrind wrote no totals")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, action="append", help="checkout (repeatable)")
    ap.add_argument("--case", default="S2", help="S1, S2 or S3 (benchmarks/speed.py)")
    ap.add_argument("--sizes", type=int, nargs=2, default=[2000, 8000],
                    help="the two request counts whose difference is measured")
    args = ap.parse_args()
    roots = [speed.checkout(r) for r in (args.root or [speed.ROOT])]
    lo, hi = args.sizes
    jobs = [(r, n) for r in roots for n in (lo, hi)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        got = dict(zip(jobs, pool.map(lambda j: count(j[0], args.case, j[1]), jobs), strict=True))
    print(f"{args.case}: instructions of simulate(), {lo:,} and {hi:,} requests (callgrind)")
    for r in roots:
        per = (got[(r, hi)] - got[(r, lo)]) / (hi - lo)
        print(f"  {r}: {per:,.0f} per request; {got[(r, lo)]:,} at {lo:,}, {got[(r, hi)]:,} at "
              f"{hi:,}")


if __name__ == "__main__":
    main()
