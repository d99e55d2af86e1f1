"""The speed harness (``benchmarks/``) runs and reports what it says: small cases, real runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, check: bool = True) -> str:
    return subprocess.run([sys.executable, *args], cwd=ROOT, check=check, capture_output=True,
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
               "--rounds", "1", "--check-frames")
    lines = out.splitlines()
    assert lines[0].startswith("S1, 300 requests, 1 rounds")
    steps = [line.split("engine steps ")[1].split()[0] for line in lines[1:3]]
    assert steps[0] == steps[1] and int(steps[0].replace(",", "")) > 0  # same simulation
    assert "B / A (best):" in lines[3]
    assert "different numbers of engine steps" not in out
    assert "frames identical, bit for bit: requests, attempts, steps, timeseries" in out


def test_ab_catches_a_checkout_that_changes_results(tmp_path: Path) -> None:
    # A copy of the simulator whose step times are 0.1 % longer (its microsecond is off).
    for part in ("simulator", "hardware_profiles"):
        shutil.copytree(ROOT / part, tmp_path / part)
    path = tmp_path / "simulator" / "engine" / "step_time.py"
    text = path.read_text()
    if "\nUS = 1e-6\n" not in text:
        pytest.fail("step_time.US moved: update this test")
    path.write_text(text.replace("\nUS = 1e-6\n", "\nUS = 1.001e-6\n"))
    out = _run("benchmarks/ab.py", "--a", str(tmp_path), "--b", ".", "--case", "S1",
               "--requests", "300", "--rounds", "1", "--check-frames", check=False)
    assert "note: the two checkouts simulate different numbers of engine steps" in out
    assert "frames differ: requests, attempts, steps" in out


def _ab_failing(checkout: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "benchmarks/ab.py", "--a", str(checkout), "--case",
                           "S1", "--requests", "50", "--rounds", "1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    return done


def test_ab_refuses_a_directory_that_is_not_a_checkout(tmp_path: Path) -> None:
    done = _ab_failing(tmp_path)
    assert done.stderr.startswith(f"error: --a {tmp_path}: no simulator/ package there")


def test_ab_says_which_run_failed(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "simulator", tmp_path / "simulator")  # no hardware_profiles/
    done = _ab_failing(tmp_path)
    assert done.stderr.startswith(f"error: the run with checkout {tmp_path} failed: ")
