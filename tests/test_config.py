"""Bad input → one clear line naming file, line and field, exit code 2; overrides obey the schema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from simulator.config import default_scenario_path, load_scenario
from simulator.errors import ConfigError


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "simulator.cli", *args],
                          capture_output=True, text=True, timeout=120)


def test_default_scenario_loads_and_overrides_apply():
    sc = load_scenario(None, ["fleet.replicas=4", "workload.arrival.rate=2.5",
                              "engine.enable_prefix_caching=false"])
    assert default_scenario_path().is_file()
    assert sc.fleet.replicas == 4 and sc.workload.arrival.rate == 2.5  # type: ignore[union-attr]
    assert sc.engine.enable_prefix_caching is False


def test_unknown_field_names_file_line_and_field(tmp_path: Path):
    p = tmp_path / "s.yaml"
    p.write_text("name: x\nfleet:\n  gpu: H100-SXM\n  replcas: 3\n")
    with pytest.raises(ConfigError) as e:
        load_scenario(p)
    msg = str(e.value)
    assert f"{p}:4" in msg and "fleet.replcas" in msg and "unknown field" in msg
    assert "\n" not in msg


def test_wrong_type_names_the_field(tmp_path: Path):
    p = tmp_path / "s.yaml"
    p.write_text("workload:\n  arrival: {kind: poisson, rate: fast}\n")
    with pytest.raises(ConfigError, match=r"s.yaml:2: workload.arrival.rate: .*valid number"):
        load_scenario(p)


def test_bad_override_is_reported_as_the_override():
    with pytest.raises(ConfigError, match=r"--set fleet.tp=0: fleet.tp: .*greater than or equal to 1"):
        load_scenario(None, ["fleet.tp=0"])


def test_yaml_is_loaded_safely(tmp_path: Path):
    p = tmp_path / "evil.yaml"
    p.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_scenario(p)


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path: Path):
    p = tmp_path / "s.yaml"
    p.write_text("fleet: {gpu: H100-SXM, replcas: 3}\n")
    r = _cli("run", str(p))
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "replcas" in lines[0]
    assert "Traceback" not in r.stderr + r.stdout


def test_cli_model_that_does_not_fit_says_what_to_change():
    r = _cli("run", "--set", "model.name=Llama-3.1-70B", "--set", "model.weight_dtype=bf16")
    assert r.returncode == 2
    assert "raise tp" in r.stderr and r.stderr.count("\n") == 1


def test_cli_unknown_gpu_lists_known_ones():
    r = _cli("profiles", "--model", "Llama-3.1-8B", "--gpu", "H999")
    assert r.returncode == 2 and "unknown gpu 'H999'" in r.stderr and "H100-SXM" in r.stderr


def test_cli_run_writes_outputs(tmp_path: Path):
    out = tmp_path / "run"
    r = _cli("run", "--set", "workload.num_requests=100", "--set", "fleet.replicas=2",
             "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "TTFT" in r.stdout and "out tok/s" in r.stdout
    import json

    import pandas as pd

    s = json.loads((out / "summary.json").read_text())
    assert s["requests"]["completed"] == 100
    df = pd.read_parquet(out / "requests.parquet")
    assert len(df) == 100 and set(df["replica"]) == {0, 1}
    assert (out / "timeseries.parquet").is_file() and (out / "steps.parquet").is_file()


def test_bad_closed_loop_ramp_is_one_line_naming_the_field():
    with pytest.raises(ConfigError, match=r"workload.arrival.ramp_up_s: .*greater than or equal to 0"):
        load_scenario(None, ["workload.arrival={kind: closed_loop, concurrency: 4, ramp_up_s: -1}"])
