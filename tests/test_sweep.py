"""Sweeps: expansion and stable keys, atomic resumable writes (an interrupted sweep loses nothing and
recomputes nothing), process pool = serial = Ray."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from simulator.errors import ConfigError
from simulator.sweep import RESULTS_DIR, done_keys, expand, load_results, load_spec, run_sweep

ROOT = Path(__file__).resolve().parents[1]
BASE = {"workload.num_requests": 120, "workload.input_len": {"kind": "fixed", "value": 200},
        "workload.output_len": {"kind": "fixed", "value": 50}}


def write_spec(d: Path, grid: dict, name: str = "spec.yaml", **more) -> Path:
    p = d / name
    p.write_text(yaml.safe_dump({"overrides": BASE, "grid": grid, **more}))
    return p


def parts(out: Path) -> dict[str, int]:
    """Part file → its modification time (ns)."""
    return {p.name: p.stat().st_mtime_ns for p in (out / RESULTS_DIR).glob("part-*.parquet")}


def comparable(df):
    drop = [c for c in df.columns if c.endswith("wall_s") or c == "summary_json"]
    return df.drop(columns=drop).sort_values("key").reset_index(drop=True)


def test_expand_grid_and_stable_keys(tmp_path: Path):
    spec = write_spec(tmp_path, {"workload.arrival.rate": [5, 10, 20], "fleet.replicas": [1, 2]},
                      replications=2)
    pts = expand(load_spec(spec), tmp_path)
    assert len(pts) == 12
    assert len({p.key for p in pts}) == 12
    assert [p.key for p in pts] == [p.key for p in expand(load_spec(spec), tmp_path)]
    assert {p.scenario.seed for p in pts} == {0, 1}
    assert {p.scenario.workload.arrival.rate for p in pts} == {5, 10, 20}


def test_bad_grid_value_fails_before_running(tmp_path: Path):
    spec = write_spec(tmp_path, {"fleet.tp": [1, 0]})
    with pytest.raises(ConfigError, match=r"fleet\.tp=0"):
        run_sweep(spec, tmp_path / "out", jobs=1, progress=False)
    assert not (tmp_path / "out" / RESULTS_DIR).exists()


def test_partial_grid_then_full_grid_recomputes_nothing(tmp_path: Path):
    out = tmp_path / "out"
    small = write_spec(tmp_path, {"workload.arrival.rate": [4, 8]}, "a.yaml")
    s1 = run_sweep(small, out, jobs=1, progress=False)
    assert (s1.total, s1.skipped, s1.ran) == (2, 0, 2)
    before = parts(out)
    full = write_spec(tmp_path, {"workload.arrival.rate": [4, 8, 16]}, "b.yaml")
    s2 = run_sweep(full, out, jobs=1, progress=False)
    assert (s2.total, s2.skipped, s2.ran) == (3, 2, 1)
    after = parts(out)
    assert {k: after[k] for k in before} == before  # the finished runs were not rewritten
    df = load_results(out)
    assert len(df) == 3 and df["key"].is_unique
    assert sorted(df["param.workload.arrival.rate"]) == [4, 8, 16]
    s3 = run_sweep(full, out, jobs=1, progress=False)
    assert (s3.skipped, s3.ran) == (3, 0)


def test_killed_sweep_resumes_without_loss_or_recompute(tmp_path: Path):
    out = tmp_path / "out"
    spec = write_spec(tmp_path, {"workload.arrival.rate": [2, 3, 4, 5, 6, 7, 8, 9]},
                      overrides={**BASE, "workload.num_requests": 300})
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "simulator.cli", "sweep", str(spec), "--out",
                             str(out), "--jobs", "1"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(parts(out) if (out / RESULTS_DIR).is_dir() else {}) < 2:
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = parts(out)
    assert 2 <= len(before) <= 8
    got: list[str] = []
    stats = run_sweep(spec, out, jobs=1, progress=False, on_row=lambda r: got.append(r["key"]))
    assert stats.skipped == len(before) and stats.ran == 8 - len(before)
    assert not {f"part-{k}.parquet" for k in got} & set(before)  # nothing recomputed
    after = parts(out)
    assert {k: after[k] for k in before} == before
    assert len(done_keys(out)) == 8 and len(load_results(out)) == 8


def test_a_run_that_cannot_be_built_is_recorded_not_retried(tmp_path: Path):
    spec = write_spec(tmp_path, {"model.name": ["Llama-3.1-8B", "Llama-3.1-405B"]})
    out = tmp_path / "out"
    s = run_sweep(spec, out, jobs=1, progress=False)
    assert s.errors == 1
    df = load_results(out).set_index("param.model.name")
    assert df.loc["Llama-3.1-405B", "status"] == "error"
    assert "raise tp" in df.loc["Llama-3.1-405B", "error"]
    assert df.loc["Llama-3.1-8B", "status"] == "ok" and df.loc["Llama-3.1-8B", "ttft_ms.p90"] > 0
    assert run_sweep(spec, out, jobs=1, progress=False).ran == 0


def test_process_pool_gives_the_serial_results(tmp_path: Path):
    spec = write_spec(tmp_path, {"workload.arrival.rate": [5, 10]},
                      scenarios=[str(ROOT / "scenarios" / "default.yaml")])
    run_sweep(spec, tmp_path / "serial", jobs=1, progress=False)
    run_sweep(spec, tmp_path / "pool", jobs=2, progress=False)
    a, b = load_results(tmp_path / "serial"), load_results(tmp_path / "pool")
    assert len(a) == 2
    assert comparable(a).equals(comparable(b))


def test_ray_local_cluster_gives_the_process_pool_results(tmp_path: Path):
    pytest.importorskip("ray", reason="Ray is the optional extra servesim[ray]")
    spec = write_spec(tmp_path, {"workload.arrival.rate": [5, 10]})
    run_sweep(spec, tmp_path / "pool", jobs=2, progress=False)
    s = run_sweep(spec, tmp_path / "ray", jobs=2, ray_address="local", progress=False)
    assert s.ran == 2
    assert comparable(load_results(tmp_path / "pool")).equals(
        comparable(load_results(tmp_path / "ray")))


def test_a_failing_point_is_recorded_and_the_sweep_goes_on(tmp_path: Path, monkeypatch):
    """A point that raises something other than ConfigError (here an OverflowError injected into
    the engine for rate 3, as `cv: .inf` once raised) is recorded as failed with its one-line
    reason; the others run; a rerun skips it; --retry-failed reruns only it."""
    import simulator.run as run_mod

    real = run_mod.simulate

    def flaky(sc, *a, **k):
        if sc.workload.arrival.rate == 3:
            raise OverflowError("cannot convert float infinity to integer\nsecond line")
        return real(sc, *a, **k)

    spec = write_spec(tmp_path, {"workload.arrival.rate": [2, 3, 4]})
    out = tmp_path / "out"
    monkeypatch.setattr(run_mod, "simulate", flaky)
    s = run_sweep(spec, out, jobs=1, progress=False)
    assert s.ran == 3 and s.errors == 1
    df = load_results(out).set_index("param.workload.arrival.rate")
    assert df.loc[3, "status"] == "failed"
    assert df.loc[3, "error"] == "OverflowError: cannot convert float infinity to integer"
    assert (df.loc[[2, 4], "status"] == "ok").all()
    assert run_sweep(spec, out, jobs=1, progress=False).ran == 0  # recorded, not rerun
    monkeypatch.setattr(run_mod, "simulate", real)  # the bug is fixed
    got: list[dict] = []
    s = run_sweep(spec, out, jobs=1, progress=False, retry_failed=True, on_row=got.append)
    assert s.ran == 1 and [r["param.workload.arrival.rate"] for r in got] == [3]
    assert (load_results(out)["status"] == "ok").all()


def test_a_damaged_part_file_is_named_by_load_results(tmp_path: Path):
    spec = write_spec(tmp_path, {"workload.arrival.rate": [2]})
    out = tmp_path / "out"
    run_sweep(spec, out, jobs=1, progress=False)
    part = next((out / RESULTS_DIR).glob("part-*.parquet"))
    part.write_bytes(part.read_bytes()[:50])
    with pytest.raises(ConfigError, match=f"{part.name}: not a readable part file"):
        load_results(out)


def _children(pid: int) -> set[int]:
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.add(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads /proc")
def test_workers_exit_when_the_sweep_is_killed(tmp_path: Path):
    spec = write_spec(tmp_path, {"workload.arrival.rate": [5, 6, 7, 8]},
                      overrides={**BASE, "workload.num_requests": 20000})
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "simulator.cli", "sweep", str(spec), "--out",
                             str(tmp_path / "out"), "--jobs", "2"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: set[int] = set()
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(workers) < 2:
            workers = {c for c in _children(proc.pid)
                       if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()}
            time.sleep(0.2)
        assert len(workers) == 2, "the sweep never started its two workers"
        time.sleep(1.0)  # the workers are simulating
    finally:
        proc.kill()  # SIGKILL: no cleanup of its own
        proc.wait()
    deadline = time.time() + 15
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.2)
    left = [w for w in workers if _alive(w)]
    for w in left:
        os.kill(w, signal.SIGKILL)
    assert not left, "workers outlived the killed sweep"
