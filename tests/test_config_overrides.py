"""The one path syntax of --set, sweeps and plans; kind changes; errors naming the --set; scalar
coercion; calibration families and files; shipped scenarios by name."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from simulator.cli import app
from simulator.config import (
    ByName,
    load_scenario,
    parse_path,
    scenario_path,
    set_path,
)
from simulator.errors import ConfigError
from simulator.profiles import data_root

DISAGG = "disagg-vs-agg"


def test_parse_path():
    assert parse_path("fleet.pools[0].replicas") == ["fleet", "pools", 0, "replicas"]
    assert parse_path("fleet.pools[h100].replicas") == ["fleet", "pools", ByName("h100"),
                                                        "replicas"]
    assert parse_path("fleet.pools.0.replicas") == ["fleet", "pools", "0", "replicas"]
    with pytest.raises(ConfigError, match=r"empty \[\]"):
        parse_path("fleet.pools[].replicas")


def test_set_path_lists_by_index_and_name():
    data = {"fleet": {"pools": [{"name": "a", "replicas": 1}, {"name": "b", "replicas": 1}]}}
    assert set_path(data, "fleet.pools[1].replicas", 3) == ["fleet", "pools", 1, "replicas"]
    assert set_path(data, "fleet.pools[a].replicas", 4) == ["fleet", "pools", 0, "replicas"]
    set_path(data, "fleet.pools.0.tp", 2)
    set_path(data, "fleet.pools[-1].tp", 8)
    assert data["fleet"]["pools"] == [{"name": "a", "replicas": 4, "tp": 2},
                                      {"name": "b", "replicas": 3, "tp": 8}]
    with pytest.raises(ConfigError, match="no item named 'c'; names: a, b"):
        set_path(data, "fleet.pools[c].replicas", 1)
    with pytest.raises(ConfigError, match="index 2 is out of range"):
        set_path(data, "fleet.pools[2].replicas", 1)
    with pytest.raises(ConfigError, match=r"pick an item as fleet.pools\[0\]"):
        set_path(data, "fleet.pools.replicas", 1)
    with pytest.raises(ConfigError, match="not a list in the scenario file"):
        set_path({}, "fleet.pools[0].replicas", 1)


def test_kind_change_starts_afresh():
    data = {"workload": {"input_len": {"kind": "lognormal", "mean": 215, "cv": 1.2}}}
    set_path(data, "workload.input_len.kind", "fixed")
    assert data["workload"]["input_len"] == {"kind": "fixed"}
    set_path(data, "workload.input_len.kind", "fixed")  # same kind: kept
    set_path(data, "workload.input_len.value", 7)
    assert data["workload"]["input_len"] == {"kind": "fixed", "value": 7}


def test_run_with_pool_overrides_by_index_and_name():
    a = load_scenario(DISAGG, ["fleet.pools[decode].replicas=3"])
    b = load_scenario(DISAGG, ["fleet.pools[1].replicas=3"])
    c = load_scenario(DISAGG, ["fleet.pools.1.replicas=3"])
    assert a.fleet.pools[1].replicas == b.fleet.pools[1].replicas == c.fleet.pools[1].replicas == 3


def test_kind_change_via_set_in_any_order():
    for sets in (["workload.input_len.kind=fixed", "workload.input_len.value=3000"],
                 ["workload.input_len.value=3000", "workload.input_len.kind=fixed"]):
        sc = load_scenario(None, sets)
        assert sc.workload.input_len.kind == "fixed"
        assert sc.workload.input_len.value == 3000  # type: ignore[union-attr]


def test_error_names_the_set_not_the_packaged_file():
    with pytest.raises(ConfigError) as e:
        load_scenario(None, ["workload.input_len.kind=fixed"])
    msg = str(e.value)
    assert msg.startswith("--set workload.input_len.kind=fixed: workload.input_len.value")
    assert "default.yaml" not in msg
    with pytest.raises(ConfigError, match=r"^--set fleet.pools\[decode\].replicas=0: "):
        load_scenario(DISAGG, ["fleet.pools[decode].replicas=0"])


@pytest.mark.parametrize("spelling", ["0.14", "vllm-0.14"])
def test_calibration_family_spellings(spelling: str):
    sc = load_scenario(None, [f"step_time.calibration={spelling}"])
    assert sc.step_time.calibration == "0.14"


def test_scalar_kept_as_written_for_text_fields():
    sc = load_scenario(None, ["name=0.10", "description=12"])
    assert sc.name == "0.10" and sc.description == "12"


def test_unknown_family_lists_the_families():
    r = CliRunner().invoke(app, ["run", "--set", "step_time.calibration=0.99"])
    assert r.exit_code == 2
    assert "vllm-0.14" in r.output and "vllm-0.24" in r.output
    r = CliRunner().invoke(app, ["profiles"], env={"COLUMNS": "120"})
    assert r.exit_code == 0 and "vllm-0.19" in r.output


def test_calibration_file_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    src = data_root("hardware_profiles") / "calibration" / "H100-SXM__vllm-0.19.yaml"
    raw = yaml.safe_load(src.read_text())
    raw["vllm_family"] = "mine"
    raw["coefficients"]["step_overhead_us"] = raw["coefficients"]["step_overhead_us"] * 3
    (tmp_path / "fit.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    from simulator.run import resolve_deployment

    # relative in --set: from the working directory
    dep = resolve_deployment(load_scenario(None, ["step_time.calibration=fit.yaml"]))
    assert dep.calibration.step_overhead_us == pytest.approx(raw["coefficients"]
                                                             ["step_overhead_us"])
    # relative in a scenario file: from its folder
    sub = tmp_path / "s"
    sub.mkdir()
    shutil.copy(tmp_path / "fit.yaml", sub / "fit.yaml")
    (sub / "x.yaml").write_text("step_time: {calibration: fit.yaml}\n")
    monkeypatch.chdir(data_root("scenarios"))
    dep = resolve_deployment(load_scenario(sub / "x.yaml"))
    assert "mine" in dep.calibration_source
    r = CliRunner().invoke(app, ["run", "--set", "fleet.gpu=H200-SXM", "--set",
                                 f"step_time.calibration={tmp_path / 'fit.yaml'}"])
    assert r.exit_code == 2 and "is a calibration for H100-SXM" in r.output


def test_user_data_folder_fit_by_family(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SERVESIM_USER_DIR", str(tmp_path))
    src = data_root("hardware_profiles") / "calibration" / "H100-SXM__vllm-0.19.yaml"
    raw = yaml.safe_load(src.read_text())
    raw["vllm_family"] = "custom"
    (tmp_path / "calibration").mkdir()
    (tmp_path / "calibration" / "H100-SXM__vllm-custom.yaml").write_text(yaml.safe_dump(raw))
    from simulator.run import resolve_deployment

    dep = resolve_deployment(load_scenario(None, ["step_time.calibration=custom"]))
    assert "vllm-custom" in dep.calibration_source
    # auto never picks a user fit
    assert "custom" not in resolve_deployment(load_scenario(None)).calibration_source


def test_shipped_scenario_by_name_from_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    assert scenario_path("chat-h100") == data_root("scenarios") / "chat-h100.yaml"
    r = CliRunner().invoke(app, ["run", "chat-h100", "--set", "workload.num_requests=20"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("chat-h100:")
    r = CliRunner().invoke(app, ["run", "chat-h10"])
    assert r.exit_code == 2 and "shipped: " in r.output and "chat-h100" in r.output
    r = CliRunner().invoke(app, ["scenarios"], env={"COLUMNS": "80"})
    assert r.exit_code == 0
    lines = r.output.splitlines()
    names = sorted(p.stem for p in data_root("scenarios").glob("*.yaml"))
    assert [x.split()[0] for x in lines] == names
    assert all(len(x) <= 80 for x in lines)


def test_sweep_and_plan_use_the_same_path_syntax():
    from simulator.sweep import _raw_scenario, build_scenario

    raw, base, _ = _raw_scenario(scenario_path(DISAGG))
    sc = build_scenario(raw, base, {"fleet.pools[prefill].replicas": 3}, "grid")
    assert sc.fleet.pools[0].replicas == 3
