"""The speed harness (``benchmarks/``) runs and reports what it says: small cases, real runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> str:
    return subprocess.run([sys.executable, *args], cwd=ROOT, check=True, capture_output=True,
                          text=True, timeout=600).stdout


def test_speed_reports_a_small_case() -> None:
    out = _run("benchmarks/speed.py", "--case", "S1", "--requests", "300", "--repeat", "1",
               "--no-slope")
    row = json.loads(out.splitlines()[0])
    assert row["case"] == "S1" and row["requests"] == 300 and row["completed"] == 300
    assert row["events"] > 0 and row["steps"] > 0 and row["peak_rss_mb"] > 0
    assert "| S1 | 300 |" in out


def test_ab_compares_two_checkouts_on_the_same_run() -> None:
    out = _run("benchmarks/ab.py", "--a", ".", "--b", ".", "--case", "S1", "--requests", "300",
               "--rounds", "1")
    lines = out.splitlines()
    assert lines[0].startswith("S1, 300 requests, 1 rounds")
    steps = [line.split("engine steps ")[1] for line in lines[1:3]]
    assert steps[0] == steps[1] and int(steps[0].replace(",", "")) > 0  # same simulation
    assert "B / A (best):" in lines[3]
    assert "different numbers of engine steps" not in out
