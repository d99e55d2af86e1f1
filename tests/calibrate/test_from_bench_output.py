"""`servesim calibrate --from-bench` writes to the user data folder (or --out), never into the
package, and the fit is then usable by family name or by path."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from simulator.calibrate import datasets as ds
from simulator.cli import app
from simulator.config import load_scenario
from simulator.profiles import data_root
from simulator.run import resolve_deployment

SCENARIO = ["model.name=Llama-3.1-405B", "model.weight_dtype=fp8", "fleet.tp=8",
            "engine.max_num_seqs=512", "engine.max_num_batched_tokens=512",
            "engine.max_model_len=8192"]


def _bench() -> str:
    try:
        runs = ds.dstack_serving_runs()
    except ds.DataMissing as e:
        pytest.skip(f"shared data not found: {e}")
    return str(runs[(runs["gpu"] == "H100-SXM") & (runs["qps"] == 16.0)].iloc[0]["path"])


def _calibrate(bench: str, *extra: str, env: dict[str, str]) -> str:
    r = CliRunner().invoke(app, ["calibrate", "--from-bench", bench, "--gpu", "H100-SXM",
                                 "--model", "Llama-3.1-405B", "--tp", "8", "--weight-dtype", "fp8",
                                 "--max-num-seqs", "512", "--max-num-batched-tokens", "512",
                                 "--family", "mine", *extra], env=env)
    assert r.exit_code == 0, r.output
    return r.output


def test_from_bench_goes_to_user_folder_and_loads(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch):
    bench = _bench()
    shipped = data_root("hardware_profiles") / "calibration" / "H100-SXM__vllm-mine.yaml"
    env = {"SERVESIM_USER_DIR": str(tmp_path / "user")}
    out = _calibrate(bench, env=env)
    f = tmp_path / "user" / "calibration" / "H100-SXM__vllm-mine.yaml"
    assert f.is_file() and not shipped.exists()
    assert "step_time.calibration=mine" in out
    monkeypatch.setenv("SERVESIM_USER_DIR", env["SERVESIM_USER_DIR"])
    dep = resolve_deployment(load_scenario(None, [*SCENARIO, "step_time.calibration=mine"]))
    assert dep.calibration_source.startswith("H100-SXM__vllm-mine")


def test_from_bench_out_folder_then_path(tmp_path: Path):
    bench = _bench()
    _calibrate(bench, "--out", str(tmp_path / "fits"), env={"SERVESIM_USER_DIR": str(tmp_path)})
    f = tmp_path / "fits" / "H100-SXM__vllm-mine.yaml"
    assert f.is_file() and not (tmp_path / "calibration").exists()
    dep = resolve_deployment(load_scenario(None, [*SCENARIO, f"step_time.calibration={f}"]))
    assert dep.calibration_source.startswith("H100-SXM__vllm-mine")
