"""A run folder on disk is whole or absent, never mixed (simulator.store, issue 23).

Real runs saved through ``Results.save``; the faults are real too: a writer process killed with
SIGKILL in the middle of a save, Ctrl-C (KeyboardInterrupt) during a save, and a full disk by a
writer that fails with ENOSPC after a few files (a fault-injecting writer: a small tmpfs needs
root and a mount).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from simulator.cli import app
from simulator.errors import ConfigError
from simulator.report.html import build_report
from simulator.run import simulate
from simulator.store import (
    MANIFEST,
    check_out_dir,
    strict_json,
    verify_run,
    write_run,
)
from tests.conftest import small_scenario

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def res():
    return simulate(small_scenario(workload={"num_requests": 40}))


def _listing(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def test_save_writes_a_manifest_that_verifies(tmp_path: Path, res) -> None:
    d = res.save(tmp_path / "run")
    m = verify_run(d)
    assert set(m["files"]) == {p.name for p in d.iterdir()} - {MANIFEST}
    assert {"summary.json", "requests.parquet", "scenario.yaml"} <= set(m["files"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_a_truncated_or_missing_file_is_refused_by_report_and_fleet_plot(tmp_path: Path,
                                                                         res) -> None:
    d = res.save(tmp_path / "run")
    f = d / "requests.parquet"
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(ConfigError, match=r"requests\.parquet: differs"):
        build_report(d)
    r = CliRunner().invoke(app, ["fleet-plot", str(d)])
    assert r.exit_code == 2 and "requests.parquet" in r.stderr
    d2 = res.save(tmp_path / "run2")
    (d2 / "steps.parquet").unlink()
    with pytest.raises(ConfigError, match=r"steps\.parquet: listed in manifest\.json but missing"):
        build_report(d2)
    (d2 / MANIFEST).unlink()
    with pytest.raises(ConfigError, match=r"no manifest\.json"):
        build_report(d2)


def test_an_existing_run_folder_is_replaced_never_mixed(tmp_path: Path, res) -> None:
    d = tmp_path / "run"
    res.save(d)
    (d / "fleet_timeseries.parquet").write_bytes(b"an old autoscaled run's file")
    (d / "fleet.png").write_bytes(b"old plot")
    res.save(d)
    assert not (d / "fleet_timeseries.parquet").exists() and not (d / "fleet.png").exists()
    verify_run(d)


def test_a_non_run_folder_is_refused_unless_forced(tmp_path: Path, res) -> None:
    d = tmp_path / "mine"
    d.mkdir()
    (d / "thesis.tex").write_text("precious")
    with pytest.raises(ConfigError, match="not a servesim run folder"):
        res.save(d)
    assert (d / "thesis.tex").read_text() == "precious"
    res.save(d, force=True)
    assert not (d / "thesis.tex").exists()
    verify_run(d)


def test_check_out_dir_refuses_what_cannot_be_written(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    for bad in (f, f / "sub", Path("/dev/null"), Path("/proc/nope/run")):
        with pytest.raises(ConfigError, match="--out"):
            check_out_dir(bad)
    check_out_dir(tmp_path / "new" / "deeper")  # a folder to be created is fine
    assert not (tmp_path / "new").exists()  # and the check creates nothing


def _enospc_after(n: int):
    """Writers that fail like a full disk once ``n`` files are written (a real partial file of
    the failing one is left in the temporary folder, as a real full disk leaves it)."""
    state = {"written": 0}

    def make(name: str):
        def write(p: Path) -> None:
            if state["written"] >= n:
                with p.open("wb") as fh:
                    fh.write(b"PAR1 truncated")
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(p))
            p.write_text(f"{name} contents")
            state["written"] += 1
        return write

    return make


def test_a_full_disk_leaves_the_folder_as_it_was(tmp_path: Path, res) -> None:
    d = tmp_path / "run"
    make = _enospc_after(2)
    files = {n: make(n) for n in ("summary.json", "requests.parquet", "steps.parquet")}
    with pytest.raises(ConfigError, match=r"No space left on device.*nothing was written"):
        write_run(d, files)
    assert not d.exists()
    # over a previous run: that run stays, whole
    res.save(d)
    before = _listing(d)
    make = _enospc_after(1)
    with pytest.raises(ConfigError, match="No space left"):
        write_run(d, {n: make(n) for n in ("summary.json", "requests.parquet")})
    assert _listing(d) == before
    verify_run(d)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_ctrl_c_during_save_leaves_the_folder_as_it_was(tmp_path: Path, res) -> None:
    d = tmp_path / "run"
    res.save(d)
    before = _listing(d)

    def interrupted(p: Path) -> None:
        p.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_run(d, {"summary.json": lambda p: p.write_text("{}"), "steps.parquet": interrupted})
    assert _listing(d) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


SLOW_SAVE = """
import sys, time
from pathlib import Path
from simulator.store import write_run
def slow(p):
    p.write_text("first file")
    print("writing", flush=True)
    time.sleep(60)
write_run(Path(sys.argv[1]), {"summary.json": slow, "requests.parquet": slow})
"""


def test_kill_9_during_save_leaves_the_folder_whole_or_absent(tmp_path: Path, res) -> None:
    for existed in (False, True):
        d = tmp_path / f"run-{existed}"
        if existed:
            res.save(d)
        before = _listing(d) if existed else None
        p = subprocess.Popen([sys.executable, "-c", SLOW_SAVE, str(d)], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None and p.stdout.readline().strip() == "writing"
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
        if existed:
            assert _listing(d) == before
            verify_run(d)
        else:
            assert not d.exists()
        # the killed writer's temporary folder is cleared by the next save beside it
        assert [q for q in tmp_path.iterdir() if q.name.startswith(f".{d.name}.tmp-")]
        res.save(d)
        verify_run(d)
        assert not [q for q in tmp_path.iterdir() if q.name.startswith(f".{d.name}.tmp-")]


def test_summary_json_is_strict_json(tmp_path: Path, res) -> None:
    text = strict_json({"a": float("inf"), "b": [float("nan"), 1.5], "c": {"d": -float("inf")}})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == {
        "a": None, "b": [None, 1.5], "c": {"d": None}}
    d = res.save(tmp_path / "run")
    json.loads((d / "summary.json").read_text(), parse_constant=lambda c: pytest.fail(c))


def test_servesim_run_refuses_an_unwritable_out_before_simulating(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    t0 = time.perf_counter()
    r = CliRunner().invoke(app, ["run", "--set", "workload.num_requests=5000", "--out", str(f),
                                 "-q"])
    assert r.exit_code == 2 and r.stderr.startswith(f"error: --out {f}")
    assert time.perf_counter() - t0 < 5  # 5000 requests were never simulated
    r = CliRunner().invoke(app, ["run", "--set", "workload.num_requests=20", "--out",
                                 str(tmp_path / "ok"), "-q"])
    assert r.exit_code == 0, r.output
    verify_run(tmp_path / "ok")
    assert len(pd.read_parquet(tmp_path / "ok" / "requests.parquet")) == 20


def test_a_full_disk_is_refused_before_simulating(tmp_path: Path, monkeypatch) -> None:
    import simulator.store as store

    # a disk with less free space than the threshold: raise the threshold past this disk's size
    monkeypatch.setattr(store, "MIN_FREE_BYTES", 2**62)
    with pytest.raises(ConfigError, match="bytes free"):
        check_out_dir(tmp_path / "run")
    r = CliRunner().invoke(app, ["run", "--out", str(tmp_path / "run"), "-q"])
    assert r.exit_code == 2 and "bytes free" in r.stderr
